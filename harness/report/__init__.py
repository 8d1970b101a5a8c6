"""Reports rendered from a ``racetape.result/1`` document, each by one call.

* :func:`render_markdown`: a pull-request comment or ``$GITHUB_STEP_SUMMARY``;
* :func:`render_html`: one self-contained page with plots and swimlane timelines;
* :func:`render_junit`: JUnit XML, one testcase per group;
* :func:`compare_documents` / :func:`render_comparison`: before and after, with verdicts;
* :func:`merge_documents`: shard results joined into one document;
* :func:`emit_test`: a standalone pytest file that replays one trace.
"""

from harness.report.compare import Comparison, compare_documents, render_comparison
from harness.report.emit import emit_test
from harness.report.html import render_html
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.merge import merge_documents
from harness.results import ResultMismatch

__all__ = [
    "Comparison",
    "ResultMismatch",
    "compare_documents",
    "emit_test",
    "merge_documents",
    "render_comparison",
    "render_html",
    "render_junit",
    "render_markdown",
]
