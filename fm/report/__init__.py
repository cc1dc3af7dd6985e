"""The report as a document: Report (document), the template narrative, the faithfulness guard that
checks any narrative against the measurements, the three-plane views and the overlay/PDF rendering."""

from fm._moved import forward_old_names

__getattr__ = forward_old_names(__name__)  # fm.report was a module before the subpackages: from fm.report import Report
