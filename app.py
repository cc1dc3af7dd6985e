"""The Gradio report demo: `python app.py [--host H] [--port P] ...` is `fm app` (fm.demo.page).

Run: .venv/bin/python app.py   (then open the printed local URL; --help for the options)
"""

from fm.cli.app import app_command

if __name__ == "__main__":
    app_command(prog_name="python app.py")
