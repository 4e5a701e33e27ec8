"""``python -m analytics campaign create|list|results``: scheduled campaigns from the command line.

The command line plans bank-wide, as a marketing user named ``cli:<OS user>`` (the campaign's owner).
"""

from __future__ import annotations

import getpass
import json


def cli_viewer():
    """The command line's viewer: bank-wide marketing, named after the OS user."""
    from analytics import access

    return access.Viewer(username=f"cli:{getpass.getuser()}", roles=("marketing",), purpose="marketing")


def add_parser(add, func) -> None:
    """Register the ``campaign`` subcommand with ``add(name, func, help)`` of :mod:`analytics.cli`."""
    p = add("campaign", func, "Plan a campaign with a control group, list campaigns, or show their results.")
    p.add_argument("action", choices=["create", "list", "results"])
    p.add_argument("--name", metavar="N", help="create: the campaign's name (unique)")
    p.add_argument("--tags", metavar="EXPR", help="create: a tag expression, e.g. 'mortgage_holder and not payroll_customer'")
    p.add_argument("--product", metavar="CATEGORY", help="create: the product category offered (e.g. fund)")
    p.add_argument("--branch", action="append", metavar="B", help="create: only this branch's customers (repeatable)")
    p.add_argument("--tier", action="append", metavar="TIER", help="create: only this value tier (repeatable)")
    p.add_argument("--control-share", type=float, metavar="S",
                   help="create: share held out as control, 0 to 0.5 (default CONTROL_SHARE)")
    p.add_argument("--seed", type=int, metavar="SEED", help="create: the assignment's seed (default: random, recorded)")
    p.add_argument("--json", action="store_true", help="list/results: print JSON")


def _fmt(value, pattern: str = "{:.1f}") -> str:
    return "-" if value is None else pattern.format(value)


def cmd_campaign(args, engine) -> int:
    from analytics import segment_explorer as sx
    from analytics.campaigns.errors import CampaignError
    from analytics.campaigns.plan import Definition, create_campaign
    from analytics.campaigns.results import list_campaigns, results_json

    viewer = cli_viewer()
    if args.action == "create":
        if not args.name:
            raise CampaignError("campaign create needs --name")
        definition = Definition(args.name, sx.Filters(branches=tuple(args.branch or ()), tiers=tuple(args.tier or ())),
                                args.tags, args.product, args.control_share)
        made = create_campaign(engine, definition, viewer=viewer, owner=viewer.username, seed=args.seed)
        left_out = ", ".join(f"{k} {v}" for k, v in made["excluded"].items() if v) or "none"
        print(f"campaign {made['campaign_id']} {made['name']!r}: {made['eligible']} eligible of {made['audience']} "
              f"selected ({made['treatment']} treatment, {made['control']} control, seed {made['seed']}); "
              f"left out: {left_out}")
        if made["expected_conversions"] is not None:
            print(f"expected: {made['expected_conversions']:.1f} conversions and {made['expected_margin']:,.0f} CNY "
                  "margin over the propensity horizon in the treatment arm (run propensities; the campaign's own "
                  "effect is measured against the control group)")
        return 0
    if args.action == "list":
        frame = list_campaigns(engine, viewer=viewer)
        if args.json:
            print(frame.to_json(orient="records", date_format="iso", force_ascii=False))
        elif frame.empty:
            print("no campaigns")
        else:
            print(frame.to_string(index=False))
        return 0
    results = results_json(engine, viewer=viewer)
    if args.json:
        print(json.dumps(results, ensure_ascii=False, default=str, indent=2))
        return 0
    if not results:
        print("no campaigns")
    for r in results:
        rate = "{:.2%}"
        print(f"campaign {r['campaign_id']} {r['name']!r}: treatment {_fmt(r['treatment_rate'], rate)} of "
              f"{_fmt(r['treatment'], '{}')}, control {_fmt(r['control_rate'], rate)} of {_fmt(r['control'], '{}')}; "
              f"uplift {_fmt(r['uplift_pp'], '{:+.1f}')} pp (95% CI {_fmt(r['ci_low_pp'], '{:+.1f}')} to "
              f"{_fmt(r['ci_high_pp'], '{:+.1f}')}); incremental margin {_fmt(r['incremental_margin'], '{:,.0f}')} CNY")
    return 0


__all__ = ["add_parser", "cli_viewer", "cmd_campaign"]
