"""Data quality: a rule engine over the customer store, scores per run, history and drill-down.

Rules live in ``data/dq_rules.yaml`` (see that file for every kind, its parameters and its
denominator). The refresh's ``data_quality`` stage (:func:`run_stage`) evaluates them all, stores

* per rule: rows checked, rows failed and the pass rate (``dq_rule_results``);
* per rule and branch / onboarding channel, for rules on ``customers`` (``dq_rule_breakdown``);
* scores in [0, 1] overall, per table, per branch and per channel, each per dimension and overall
  (``dq_scores``);
* the headline figures in ``run_metrics``: ``dq_overall``, ``dq_completeness`` (完整率),
  ``dq_validity`` (准确率), ``dq_freshness`` (鲜活率, the timeliness dimension),
  ``dq_consistency``, ``dq_uniqueness``, and ``dq_as_of``.

**Scores.** The pass rate of a rule is ``(checked - failed) / checked`` (undefined, and left out,
when it checked nothing). A dimension's score is the mean of its rules' pass rates weighted by
severity (high 3, medium 2, low 1); the overall score is the mean of the dimension scores weighted
completeness 0.25, validity 0.25, consistency 0.20, uniqueness 0.10, timeliness 0.20 (a dimension
with nothing checked is left out and the rest re-weighted). Both weight sets are in the rule file.
Every scope (overall, a table, a branch, a channel) is scored by the same formula from its own rules.

**Speed.** Counting is pushed down to SQL wherever SQL can do it: all the row-predicate rules of a
table (not-null, allowed values, range, compare, freshness, expiry) share a single scan with one
``SUM(CASE ...)`` pair per rule, grouped by branch and channel; a foreign key is a ``LEFT JOIN``; a
unique key is a ``GROUP BY ... HAVING COUNT(*) > 1`` joined back. Only what SQL cannot do portably
(the identifier validators, regular expressions, ID/birth-date/gender consistency, normalised
likely duplicates) streams the needed columns once per table in chunks of ``LOAD_CHUNK_ROWS`` and
uses the vectorised masks of :mod:`analytics.validators`. Table and column names come only from the
rule file and are checked against the schema (:data:`analytics.schema.metadata`) before any SQL is
built; every value is a bound parameter.

**Drill-down** (:func:`failing_records`, :func:`fix_list`) re-runs one stored rule definition at
the run's as-of date against the store as it is *now*: a record fixed since the run no longer
shows. Results are unmasked unless ``roles`` is given; pages must pass the user's roles.

**Layout.** :mod:`~analytics.quality.rules` parses and validates the rule file;
:mod:`~analytics.quality.evaluation` counts failures in SQL and Python;
:mod:`~analytics.quality.scoring` rolls counts up into scores; :mod:`~analytics.quality.stage` is the
refresh stage; :mod:`~analytics.quality.read` reads stored results; :mod:`~analytics.quality.drilldown`
lists failing records. Each imports only those listed before it, so there is no cycle.
"""

# The private helpers the tests check directly (_KIND_PARAMS, _norm_text, _norm_phone) keep their old
# address through a redundant alias. DEFAULT_RULES_PATH is here to be read only: load_rules looks it
# up in analytics.quality.rules, so that is where a different rule file is pointed to.
from analytics.quality.drilldown import failing_records, fix_list
from analytics.quality.evaluation import (
    BREAKDOWN_TABLE,
    BREAKDOWNS,
    MISSING_GROUP,
    QualityResult,
    as_of_date,
    evaluate,
    months_before,
)
from analytics.quality.evaluation import _norm_phone as _norm_phone
from analytics.quality.evaluation import _norm_text as _norm_text
from analytics.quality.read import (
    breakdown_for,
    rule_breakdown,
    rule_results,
    score_change,
    score_history,
    scores,
)
from analytics.quality.rules import _KIND_PARAMS as _KIND_PARAMS
from analytics.quality.rules import (
    AS_OF,
    DEFAULT_DIMENSION_WEIGHTS,
    DEFAULT_RULES_PATH,
    DEFAULT_SEVERITY_WEIGHTS,
    DIMENSIONS,
    NORMALISERS,
    PYTHON_KINDS,
    ROW_KINDS,
    SEVERITIES,
    SQL_QUERY_KINDS,
    VALIDATORS,
    QualityError,
    Rule,
    RuleSet,
    load_rules,
    parse_rule,
    parse_rules,
)
from analytics.quality.scoring import compute_scores
from analytics.quality.stage import METRIC_DIMENSIONS, run_stage, store_results

__all__ = [
    "AS_OF", "BREAKDOWN_TABLE", "BREAKDOWNS", "DEFAULT_DIMENSION_WEIGHTS", "DEFAULT_RULES_PATH",
    "DEFAULT_SEVERITY_WEIGHTS", "DIMENSIONS", "METRIC_DIMENSIONS", "MISSING_GROUP", "NORMALISERS",
    "PYTHON_KINDS", "ROW_KINDS", "SEVERITIES", "SQL_QUERY_KINDS", "VALIDATORS", "QualityError",
    "QualityResult", "Rule", "RuleSet", "as_of_date", "breakdown_for", "compute_scores", "evaluate", "failing_records",
    "fix_list", "load_rules", "months_before", "parse_rule", "parse_rules", "rule_breakdown", "rule_results",
    "run_stage", "score_change", "score_history", "scores", "store_results",
]
