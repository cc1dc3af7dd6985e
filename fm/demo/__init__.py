"""The Gradio demo: the page (page) and each visitor's state and folder (visitor, Gradio-free)."""

from fm._moved import forward_old_names

__getattr__ = forward_old_names(__name__)  # fm.demo was a module before the subpackages
