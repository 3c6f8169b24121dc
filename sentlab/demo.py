"""Try a run's model in the browser: a Gradio page on 127.0.0.1 with a text box, the label and a bar per label
probability, example texts (the run's held-out test texts), and optionally a second model side by side.

    python -m sentlab.demo RUN_ID                                      # make demo RUN=RUN_ID
    python -m sentlab.demo models:/reviews@champion --compare ZERO_SHOT_RUN --port 7860   # make demo RUN=... RUN2=...

Each model answers as `python -m sentlab.predict MODEL TEXT` does (the same classifier, sentlab.mlflow_model.load).
"""

from __future__ import annotations

import os
import tempfile

from sentlab import cli, mlflow_model
from sentlab.errors import ConfigError

EXAMPLES = 6  # example texts offered under the text box


def load(refs: list[str]) -> tuple[list, list[str]]:
    """The models' classifiers (every reference fetched first, so a bad one is one line before any loads) and the
    first model's held-out texts as examples."""
    with tempfile.TemporaryDirectory() as tmp:
        files = [mlflow_model.fetch(ref, os.path.join(tmp, str(i))) for i, ref in enumerate(refs)]
        examples = files[0].held_out_texts()[:EXAMPLES]
        return [f.serving_classifier() for f in files], examples


def page(refs: list[str], classifiers: list, examples: list[str]):
    """The Gradio Blocks app: one gr.Label per model (label, and a bar per label probability)."""
    import gradio as gr

    def classify(text: str):
        answers = []
        for classifier in classifiers:
            row = classifier.predict([text]).iloc[0]
            answers.append({name: float(row[f"prob_{name}"]) for name in classifier.label_names})
        return answers[0] if len(answers) == 1 else answers

    with gr.Blocks(title="sentlab demo") as app:
        gr.Markdown("## sentlab: try " + " against ".join(f"`{ref}`" for ref in refs))
        text = gr.Textbox(label="Text", lines=3, placeholder="Type a sentence, or pick an example below")
        button = gr.Button("Classify", variant="primary")
        with gr.Row():
            outputs = [
                gr.Label(label=ref, num_top_classes=len(c.label_names), elem_id=f"model-{i}")
                for i, (ref, c) in enumerate(zip(refs, classifiers))
            ]
        gr.Examples(examples=[[t] for t in examples], inputs=text, label="Examples (the run's test texts)")
        button.click(classify, inputs=text, outputs=outputs)
        text.submit(classify, inputs=text, outputs=outputs)
    return app


@cli.entry_point("sentlab.demo")
def main(argv=None) -> int:
    p = cli.parser("sentlab.demo", __doc__)
    p.add_argument("--compare", metavar="MODEL2", help="a second model shown side by side: " + cli.MODEL_HELP)
    p.add_argument("--port", type=int, default=7860, help="the port on 127.0.0.1 (default: %(default)s)")
    args = p.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ConfigError("gradio is not installed (pip install gradio==6.31.0, or sentlab[demo])") from None
    mlflow_model.use_store(args.tracking_uri)
    refs = [args.model, *([args.compare] if args.compare else [])]
    classifiers, examples = load(refs)
    app = page(refs, classifiers, examples)
    print(f"sentlab.demo: http://127.0.0.1:{args.port} (Ctrl+C stops it)", flush=True)
    app.launch(server_name="127.0.0.1", server_port=args.port, share=False, quiet=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
