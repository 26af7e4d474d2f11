"""Leaderboards rebuilt from result records alone (same records -> byte-identical files).

One table per (data set, split protocol, track): a Markdown file and a JSON file
under ``leaderboards/<dataset>/<protocol>/``, plus one static page
``leaderboards/index.html`` with every table (sortable, inline JS) and a plot of
the sort metric with its intervals per method (inline SVG, drawn here). Records
whose split fingerprint differs from the table's are left out and reported,
never mixed in. Every metric's best method is compared with each other method by
a paired test over users (:mod:`benchmark.significance`, Holm-corrected).

A sweep over seeds (records under ``<protocol>-seed<s>``) also gets one summary table
per (data set, protocol, track): each method's metrics as mean ± sample standard
deviation over seeds (``<track>-seeds.md`` / ``.json`` next to seed 0's table)."""

# one module per section; every name stays importable from benchmark.leaderboard
from benchmark.leaderboard.curves import (  # noqa: F401
    _CURVE_COLOURS,
    _edit_curves,
    _k_order,
    build_curves,
    curve_markdown,
    curve_svg,
)
from benchmark.leaderboard.escape import (  # noqa: F401
    _LATEX_SPECIAL,
    _latex_escape,
    md_cell,
)
from benchmark.leaderboard.html import (  # noqa: F401
    _CSS,
    _JS,
    _svg_plot,
    to_html,
)
from benchmark.leaderboard.latex import (  # noqa: F401
    _LATEX_NAMES,
    _latex_metric,
    _latex_table,
    to_latex,
)
from benchmark.leaderboard.seeds import (  # noqa: F401
    MIXED_NOTE,
    SEED_NOTE,
    _finite,
    _json_null_nan,
    _mean_sd,
    _mixed_mark,
    _seed_bold_note,
    _seed_cell,
    _seed_title,
    _seeds_html,
    build_seed_tables,
    seed_provenance,
    seeds_to_latex,
    seeds_to_markdown,
)
from benchmark.leaderboard.tables import (  # noqa: F401
    _COLUMN_PREFIXES,
    _EXTRA_COLUMNS,
    DAGGER,
    NOT_RANKED,
    RANKING_TABLE_METRICS,
    RATING_EXCLUSIONS,
    RATING_METRICS,
    RATING_SORT_METRIC,
    REFERENCE_METHODS,
    RERANK_METRICS,
    SORT_METRIC,
    TABLE_METRICS,
    TEST,
    TRACK_METRICS,
    TRACK_SORT_METRIC,
    _add_significance,
    _cell,
    _column,
    _is_rerank,
    _marks,
    _ranked,
    _rating_users,
    _record_seed,
    _reference_note,
    _rerank_note,
    _table_seed,
    _users_note,
    build_tables,
    check_columns,
    provenance,
    significance_note,
    sort_metric,
    table_metrics,
    to_markdown,
    with_columns,
)
from benchmark.leaderboard.write import (  # noqa: F401
    _board_folder,
    select_tables,
    write_leaderboards,
)
