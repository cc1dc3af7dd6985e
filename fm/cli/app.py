"""`fm app`: the report demo in the browser (fm.demo)."""

from __future__ import annotations

import click


@click.command("app")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--model", help="Segmenter (default: the contrast-adaptive fm3d/atlas-em), as for fm report.")
@click.option("--lm", help="Report model: a folder or hf-hub:org/name (default: the bundled one).")
@click.option("--no-llm", is_flag=True, help="No language model: template narrative, no chat.")
@click.option("--max-upload-mb", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--concurrency", type=click.IntRange(min=1), default=2, show_default=True, help="Analyses run at once.")
@click.option("--queue-size", type=click.IntRange(min=1), default=16, show_default=True, help="Requests that may wait.")
def app_command(host, port, model, lm, no_llm, max_upload_mb, concurrency, queue_size):
    """Serve the report demo in the browser: upload a brain MRI or take the example, see the
    segmentation in three planes, the measurements and the report, ask questions, download the
    files. AI draft, not for clinical use.

    \b
    Examples:
      fm app
      fm app --host 0.0.0.0 --port 8080 --concurrency 4
    """
    import logging

    from fm.demo.page import DemoSettings, launch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = DemoSettings(model, lm, not no_llm, max_upload_mb, concurrency, queue_size)
    launch(settings, host, port)
