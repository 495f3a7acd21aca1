#!/usr/bin/python3
"""Renders every chat template of the shared corpus with every test conversation, the way the
Hugging Face renderer (transformers' _compile_jinja_template) does, and writes the results that
tests/chat/corpus_test.cpp compares against byte for byte.

    scripts/gen-template-expectations.py [TEMPLATES_DIR]

TEMPLATES_DIR defaults to $HEARTH_TESTDATA/templates, else ../shared/testdata/templates.
Conversations: tests/chat/conversations/*.json; each file is the whole render context (messages,
tools, add_generation_prompt, bos_token, eos_token, extra variables), passed as keyword arguments.
Output: tests/chat/expected/<template stem>/<conversation stem>.txt holding the rendering, or
<conversation stem>.error when the template raises (first line: the exception type, then the
message). Needs python3-jinja2 (Debian: apt-get install python3-jinja2), not transformers; the
committed files were made with Debian 12's jinja2 3.1.2 and are identical with jinja2 3.1.6.
The tests read the committed files, so CI needs no Python. strftime_now is pinned to
FIXED_NOW so the expectations do not depend on the day they were made; corpus_test.cpp's
fixed_now() passes the same instant.
"""
import datetime
import json
import os
import shutil
import sys

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXED_NOW = datetime.datetime(2026, 3, 9, 14, 30, 5)  # fixed_now() in tests/chat/corpus_test.cpp


class GenerationTag(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %} as transformers' AssistantTracker parses it: the body
    becomes the caller of a call block (so it is its own scope) and renders unchanged."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    @jinja2.pass_eval_context
    def _generation_support(self, context, caller):
        return caller()


def make_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    default_dir = os.path.join(os.environ.get("HEARTH_TESTDATA", os.path.join(ROOT, "..", "shared", "testdata")),
                               "templates")
    templates_dir = sys.argv[1] if len(sys.argv) > 1 else default_dir
    conv_dir = os.path.join(ROOT, "tests", "chat", "conversations")
    out_dir = os.path.join(ROOT, "tests", "chat", "expected")
    conversations = sorted(f for f in os.listdir(conv_dir) if f.endswith(".json"))
    templates = sorted(f for f in os.listdir(templates_dir) if f.endswith(".jinja"))
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    env = make_environment()
    n_ok = n_err = 0
    for tname in templates:
        stem = tname[: -len(".jinja")]
        with open(os.path.join(templates_dir, tname), encoding="utf-8") as f:
            source = f.read()
        os.makedirs(os.path.join(out_dir, stem))
        template = env.from_string(source)
        for cname in conversations:
            with open(os.path.join(conv_dir, cname), encoding="utf-8") as f:
                context = json.load(f)
            cstem = cname[: -len(".json")]
            try:
                text = template.render(**context)
                path, n_ok = os.path.join(out_dir, stem, cstem + ".txt"), n_ok + 1
            except Exception as e:  # the template rejected this conversation: record how
                text = "%s\n%s" % (type(e).__name__, e)
                path, n_err = os.path.join(out_dir, stem, cstem + ".error"), n_err + 1
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(text)
    print("%d templates x %d conversations: %d renderings, %d errors" %
          (len(templates), len(conversations), n_ok, n_err))


if __name__ == "__main__":
    main()
