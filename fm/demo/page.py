"""The Gradio report demo (`python app.py`, `fm app`): upload a brain MRI (or take the bundled
example), see the segmentation over it in three planes, the measurements, the report and its
narrative, ask questions about the scan, and download the report files.

Each visitor's scans and results live in a DemoSession (a gr.State) with a folder of its own,
removed when the session ends; the queue bounds concurrent work and waiting visitors; uploads are
capped in size; a bad upload shows a message in the page, clears the previous results and is
logged as one line without file names.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import html
import logging
import shutil
import tempfile
from pathlib import Path

import gradio as gr

from fm.clinical.outputs import FHIR_FILE, SEG_FILE, SR_FILE
from fm.core.errors import InputError
from fm.core.examples import example_contrasts, example_paths
from fm.core.io import READABLE_SUFFIXES
from fm.demo.visitor import NOTICE, VIEW_NAMES, WINDOWS, DemoSession, public_message

log = logging.getLogger("fm.app")

# One-file formats only: the data file of a two-file .mhd/.nhdr cannot come with a single upload.
UPLOADABLE = [s for s in READABLE_SUFFIXES if s not in (".mhd", ".nhdr")] + [".zip"]
STAGES = {"load": "Reading the scans", "gate": "Checking it is a brain MRI", "segment": "Segmenting"}
STAGES |= {"measure": "Measuring", "narrative": "Writing the narrative", "write": "Writing the report files"}
MEASUREMENT_HEADERS = ["finding", "side", "region", "volume (mL)", "longest (mm)", "short axis (mm)"]
SESSION_HOURS = 2


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    model: str | None = None  # segmenter (default: the contrast-adaptive one)
    lm: str | None = None  # report model folder or Hub id (default: the bundled one)
    narrative: bool = True  # write the language model's narrative and offer the chat
    max_upload_mb: int = 512
    concurrency: int = 2
    queue_size: int = 16


class Models:
    """The segmenter and the report model, loaded once on first use and shared by every visitor
    (they hold no visitor's data)."""

    def __init__(self, settings: DemoSettings):
        self.settings = settings

    @functools.cached_property
    def pipeline(self):
        from fm.pipeline.report_pipeline import ReportPipeline

        return ReportPipeline.from_pretrained(self.settings.model)

    @functools.cached_property
    def report_model(self):
        from fm.lm.loading import load_report_model

        return load_report_model(self.settings.lm)

    def narrate(self, report, volumes, label_map=None):
        from fm.lm.loading import DEFAULT_LM_ID
        from fm.pipeline.narration import narrate

        return narrate(report, volumes, self.report_model, self.settings.lm or DEFAULT_LM_ID, label_map=label_map)


def _legend_html(entries) -> str:
    swatches = "".join(
        f'<span style="display:inline-flex;align-items:center;margin:0 12px 4px 0">'
        f'<span style="width:14px;height:14px;border-radius:3px;margin-right:5px;background:rgb{colour}"></span>'
        f"{html.escape(name)}</span>"
        for name, colour in entries
    )
    return f'<div class="fm-legend">{swatches}</div>'


def _narrative_markdown(report) -> str:
    heading, text = report.shown_narrative
    drafted = report.model_narrative
    if drafted is None:
        verdict = "No language model narrative was written: this is the template, built from the findings alone."
    elif drafted.kept:
        verdict = "Faithfulness check: no statement contradicts the measurements."
    else:
        verdict = (
            f"Faithfulness check: the model's draft was withheld ({len(drafted.contradictions)} contradiction(s))."
        )
    return f"**{heading}**\n\n{text}\n\n_{verdict}_"


def build_app(settings: DemoSettings = DemoSettings()) -> gr.Blocks:
    models = Models(settings)
    root = Path(tempfile.mkdtemp(prefix="fm-app-"))  # every session's folder lives under it

    def session_of(state: DemoSession | None) -> DemoSession:
        return state if state is not None else DemoSession(root)

    def cleared(state: DemoSession, message: str):
        """The outputs of a failed analysis: the message, every earlier result gone."""
        state.clear()
        empty_slider = gr.update(value=0, maximum=1)
        return (message, None, None, None, empty_slider, empty_slider, empty_slider, "", [], "", "", None, [], state)

    def legend_of(state, tissue):
        if state is None or state.analysis is None:
            return ""
        return _legend_html(state.legend(bool(tissue)))

    def analyse(files, contrasts_text, use_example, state, tissue=False, progress=gr.Progress()):
        state = session_of(state)
        uploads = [Path(f) for f in (files or [])]
        if use_example:
            paths, contrasts = list(example_paths()), list(example_contrasts())
        elif not uploads:
            return cleared(state, "Upload a scan (or several contrasts of one session), or press **Use the example**.")
        else:
            paths = uploads
            contrasts = [c.strip() for c in contrasts_text.split(",") if c.strip()] if contrasts_text else None
        steps = list(STAGES)

        def stage(name: str) -> None:
            progress(steps.index(name) / len(steps) if name in steps else None, desc=STAGES.get(name, name))

        try:
            analysis = state.analyse(
                paths, contrasts, models.pipeline, models.narrate if settings.narrative else None, stage
            )
        except InputError as error:
            message = public_message(error, uploads)
            log.info("refused an upload: %s", type(error).__name__)  # no file names: they may identify a patient
            return cleared(state, f"**Could not report this scan.** {message}")
        slices, counts = state.start_slices(), state.slice_counts()
        window = next(iter(WINDOWS))
        images = state.views(slices, window, 0.35, bool(tissue))
        sliders = [gr.update(value=slices[n], maximum=counts[n] - 1) for n in VIEW_NAMES]
        report = analysis.report
        impression = "\n".join(f"- {line}" for line in report.structured["impression"])
        status = f"**{NOTICE}**\n\n**Impression**\n\n{impression}"
        shown = ("report.pdf", "report.json", "report.md", "mask.nii.gz", FHIR_FILE, SEG_FILE, SR_FILE)
        files_out = [str(analysis.files[name]) for name in shown if name in analysis.files]
        return (
            status,
            *images,
            *sliders,
            _legend_html(state.legend(bool(tissue))),
            state.measurements(),
            report.to_markdown(),
            _narrative_markdown(report),
            files_out,
            [],
            state,
        )

    def redraw(state, axial, coronal, sagittal, window, opacity, tissue=False):
        if state is None or state.analysis is None:
            return None, None, None
        slices = dict(zip(VIEW_NAMES, (int(axial), int(coronal), int(sagittal))))
        return tuple(state.views(slices, window, float(opacity), bool(tissue)))

    def go_to_finding(state, window, opacity, tissue, event: gr.SelectData):
        if state is None or state.analysis is None:
            return (gr.update(),) * 6
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        slices = state.slices_at_row(int(row))
        if slices is None:
            return (gr.update(),) * 6
        images = state.views(slices, window, float(opacity), bool(tissue))
        return (*images, *(gr.update(value=slices[n]) for n in VIEW_NAMES))

    def ask(question, history, state):
        history = list(history or [])
        question = (question or "").strip()
        if not question:
            yield history, ""
            return
        if state is None or state.analysis is None:
            history += [
                {"role": "user", "content": question},
                {"role": "assistant", "content": "Analyse a scan first."},
            ]
            yield history, ""
            return
        from fm.pipeline.conversation import checked, stream_answer
        from fm.pipeline.scan_features import session_features
        from fm.serve.backends import TransformersBackend

        model = models.report_model
        if state.features is None:
            state.features = session_features(model, state.analysis.volumes, state.analysis.label_map)
        findings = state.analysis.findings
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        answer = ""
        for piece in stream_answer(TransformersBackend(model), state.features, findings, question, state.history):
            answer += piece
            history[-1]["content"] = answer
            yield history, ""
        result = checked(question, answer, findings)
        if result.verdict is not None and result.verdict.contradictions:
            history[-1]["content"] = f"{answer}\n\n(warning: this answer contradicts the measurements)"
        elif result.verdict is not None and result.verdict.unchecked:
            history[-1]["content"] = f"{answer}\n\n(unchecked: it speaks of what the program does not measure)"
        state.history.append((question, result.text))
        yield history, ""

    with gr.Blocks(title="fm3d report demo", delete_cache=(3600, SESSION_HOURS * 3600)) as demo:
        state = gr.State(None, time_to_live=SESSION_HOURS * 3600, delete_callback=lambda s: s and s.close())
        gr.Markdown(
            "# Brain MRI report demo\n"
            "Upload a brain MRI (NIfTI, MGZ, NRRD, MHA, or a .zip of one DICOM series), several co-registered "
            "contrasts of one session, or take the bundled example. **AI draft, not for clinical use.**"
        )
        with gr.Row():
            with gr.Column(scale=2):
                files = gr.File(label="Scans", file_count="multiple", file_types=UPLOADABLE, type="filepath")
                contrasts = gr.Textbox(
                    label="Contrasts (optional, one per scan, e.g. t1c,flair)", max_lines=1, placeholder="guessed"
                )
            with gr.Column(scale=1):
                run = gr.Button("Analyse the upload", variant="primary")
                example = gr.Button("Use the example (T1c + FLAIR)")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            images = [
                gr.Image(label=name.capitalize(), type="numpy", interactive=False, height=380, elem_id=f"view-{name}")
                for name in VIEW_NAMES
            ]
        with gr.Row():
            sliders = [
                gr.Slider(0, 1, value=0, step=1, label=f"{name.capitalize()} slice", elem_id=f"slider-{name}")
                for name in VIEW_NAMES
            ]
        with gr.Row():
            window = gr.Radio(list(WINDOWS), value=next(iter(WINDOWS)), label="Window")
            opacity = gr.Slider(0, 1, value=0.35, step=0.05, label="Overlay opacity")
            tissue = gr.Checkbox(False, label="Show tissue labels (not only lesions)")
        legend = gr.HTML()
        with gr.Row():
            with gr.Column(scale=4):
                table = gr.Dataframe(
                    headers=MEASUREMENT_HEADERS,
                    interactive=False,
                    label="Measurements (click a row to move the views to it)",
                    elem_id="measurements",
                )
            with gr.Column(scale=2):
                downloads = gr.File(
                    label="Report files (PDF, JSON, Markdown, mask, FHIR; DICOM SEG and SR for DICOM input)",
                    file_count="multiple",
                    interactive=False,
                )
        with gr.Row():
            narrative = gr.Markdown(elem_id="narrative")
            with gr.Column(visible=settings.narrative):
                chatbot = gr.Chatbot(label="Questions about this scan", height=260)
                question = gr.Textbox(label="Ask", placeholder="e.g. Which side is the lesion on?", max_lines=1)
        with gr.Accordion("Structured report", open=False):
            report_text = gr.Markdown(elem_id="report")

        outputs = [status, *images, *sliders, legend, table, report_text, narrative, downloads, chatbot, state]
        run.click(
            lambda f, c, s, t, progress=gr.Progress(): analyse(f, c, False, s, t, progress),
            [files, contrasts, state, tissue],
            outputs,
            api_name="analyse",
        )
        example.click(
            lambda s, t, progress=gr.Progress(): analyse(None, None, True, s, t, progress),
            [state, tissue],
            outputs,
            api_name="example",
        )
        view_inputs = [state, *sliders, window, opacity, tissue]
        for control in sliders:
            control.release(redraw, view_inputs, images, api_name=False)
        gr.on([window.change, opacity.release, tissue.change], redraw, view_inputs, images, api_name="views")
        tissue.change(legend_of, [state, tissue], legend, api_name=False)
        table.select(go_to_finding, [state, window, opacity, tissue], [*images, *sliders], api_name=False)
        question.submit(ask, [question, chatbot, state], [chatbot, question], api_name="ask")
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return demo


def launch(settings: DemoSettings = DemoSettings(), host: str = "127.0.0.1", port: int | None = None, **options):
    """Build and serve the demo; uploads above settings.max_upload_mb are refused by Gradio itself."""
    demo = build_app(settings)
    demo.launch(
        server_name=host,
        server_port=port,
        max_file_size=f"{settings.max_upload_mb}mb",
        show_error=False,
        footer_links=["gradio"],
        **options,
    )
    return demo
