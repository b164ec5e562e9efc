"""The ``gridflow`` command. Each command parses, calls one library function, prints.

Exit codes: 0 ok, 1 validation mismatch, 2 bad input, 3 no convergence.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from gridflow.errors import GridflowError
from gridflow.study.command import buses as buses_command
from gridflow.study.command import study as study_command
from gridflow.sweep.command import sweep as sweep_command

DEFAULT_CASE = "case_ACTIVSg25k"
EXIT_OK, EXIT_MISMATCH, EXIT_INPUT, EXIT_NOCONV = 0, 1, 2, 3


class _Group(click.Group):
    """Turns every gridflow error into one line on stderr and its exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GridflowError as e:
            click.echo(f"gridflow: error: {e}", err=True)
            sys.exit(e.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("gridflow: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # output piped into a reader that stopped early (| head): nothing to report
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep Python's exit flush quiet
            except OSError:
                pass
            sys.exit(0)
        except Exception as e:  # a bug, not bad input: still one line, unless --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"gridflow: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
                       err=True)
            sys.exit(4)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log solver progress (-vv for every iteration).")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(package_name="gridflow")
@click.pass_context
def main(ctx, verbose, debug):
    """gridflow: AC power flow for large interconnections, with datacenter what-if studies."""
    ctx.obj = {"debug": debug}
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("case", default=DEFAULT_CASE, required=False)
@click.option("--init", type=click.Choice(["auto", "flat", "dc", "case"]), default="auto", show_default=True,
              help="Start voltages.")
@click.option("--tol", "tol_mva", type=click.FloatRange(min=0, min_open=True), default=1e-8, show_default=True,
              help="Converged when every |dP|, |dQ| is below this (MW / MVAr).")
@click.option("--max-iter", type=click.IntRange(min=1), default=30, show_default=True,
              help="Newton iterations per start.")
@click.option("--q-lims", is_flag=True, help="Enforce generator reactive limits (PV -> PQ).")
@click.option("--distributed-slack", is_flag=True,
              help="Share the slack among generators (participation: the net's slack weights, else Pmax).")
@click.option("--participation", type=click.Choice(["pmax", "headroom"]),
              help="Participation factors of --distributed-slack (default: slack weights, else pmax).")
@click.option("--backend", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True)
@click.option("--solver", type=click.Choice(["auto", "klu", "superlu"]), default="auto", show_default=True,
              help="CPU sparse LU.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write bus, branch and gen results: .csv (three files), .json or .parquet (three files).")
def solve(case, init, tol_mva, max_iter, q_lims, distributed_slack, participation, backend, solver, out):
    """Solve the AC power flow of CASE (a .m, pandapower .json, PSS/E .raw/.rawx, CGMES .zip, UCTE .uct or
    IIDM file, or a case name; default: the 25,000-bus US Northeast/Mid-Atlantic synthetic grid)."""
    import time

    from gridflow.io import load_case
    from gridflow.output import write_result
    from gridflow.solve import solve as solve_case

    if out is not None:
        _check_out(out)
    t0 = time.perf_counter()
    c = load_case_warning(load_case, case)
    t1 = time.perf_counter()
    if participation is not None and not distributed_slack:
        raise GridflowError("--participation needs --distributed-slack")
    res = solve_case(c, backend=backend, init=init, tol_mva=tol_mva, max_iter=max_iter, enforce_q_lims=q_lims,
                     distributed_slack=distributed_slack, participation=participation, solver=solver)
    t2 = time.perf_counter()
    s = res.summary()
    if not res.converged:  # the last iterate is no result: no losses, voltages or overloads printed
        click.echo(_format_summary(s, load_s=t1 - t0, solve_s=t2 - t1).splitlines()[0])
        click.echo(f"gridflow: error: {res.message}", err=True)
        sys.exit(EXIT_NOCONV)
    click.echo(_format_summary(s, load_s=t1 - t0, solve_s=t2 - t1))
    if out is not None:
        for p in write_result(res, out):
            click.echo(f"wrote {p}")


def load_case_warning(load, source):
    """``load(source)``, each Python warning it raises printed as one 'gridflow: warning:' line on stderr."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        case = load(source)
    for w in caught:
        if issubclass(w.category, UserWarning):
            click.echo(f"gridflow: warning: {' '.join(str(w.message).split())}", err=True)
        else:  # not ours to rephrase: shown as Python shows it
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return case


def _check_out(out: Path):
    if out.suffix.lower() not in (".csv", ".json", ".parquet"):
        raise GridflowError(f"--out {out}: use a .csv, .json or .parquet file name")
    if not out.parent.exists():
        raise GridflowError(f"--out {out}: folder {out.parent} does not exist")


def _format_summary(s: dict, load_s: float, solve_s: float) -> str:
    status = "converged" if s["converged"] else "NOT CONVERGED"
    origin = f" ({s['origin']})" if s.get("origin") else ""
    lines = [
        f"{s['case']}{origin}: {s['buses']} buses, {s['branches']} branches, {s['generators']} generators "
        f"(read in {load_s:.2f} s)",
        f"  {status} in {s['iterations']} iterations (init {s['init']}, {s['backend']}, {solve_s * 1e3:.0f} ms); "
        f"max mismatch {s['max_mismatch_mva']:.2e} MVA at bus {s['worst_mismatch_bus']}",
        f"  load {s['load_mw']:.1f} MW, generation {s['generation_mw']:.1f} MW, losses {s['losses_mw']:.1f} MW",
    ]
    if "vm_min_pu" in s:
        lines.append(f"  voltage {s['vm_min_pu']:.4f} pu (bus {s['vm_min_bus']}) to {s['vm_max_pu']:.4f} pu "
                     f"(bus {s['vm_max_bus']}); {s['undervoltage_buses']} buses below Vmin, "
                     f"{s['overvoltage_buses']} above Vmax")
    over = f"  {s['overloaded_branches']} branches over rating A"
    if s["overloaded_branches"]:
        over += f" (worst {s['max_loading_branch']} at {s['max_loading_percent']:.0f} %)"
    lines.append(over)
    if s.get("unrated_branches"):
        lines.append(f"  {s['unrated_branches']} branches unrated, not monitored")
    if s["dead_buses"]:
        lines.append(f"  {s['dead_buses']} buses de-energized (out of service, isolated or in islands without a "
                     "slack bus): not served")
    return "\n".join(lines)


@main.command()
@click.argument("case")
@click.option("--init", type=click.Choice(["auto", "flat", "dc", "case"]), default="auto", show_default=True)
@click.option("--tol-vm", type=float, default=1e-6, show_default=True, help="pu")
@click.option("--tol-va", type=float, default=1e-4, show_default=True, help="degrees")
@click.option("--tol-flow", type=float, default=1e-3, show_default=True, help="MW / MVAr")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def validate(case, init, tol_vm, tol_va, tol_flow, as_json):
    """Solve CASE with gridflow and with its reference (pandapower for pandapower cases, PYPOWER for
    .m files, OpenLoadFlow for files read through pypowsybl) and print the worst differences; exit 1
    beyond tolerance."""
    from gridflow.validate import validate as run

    v = run(case, init=init, tol_vm_pu=tol_vm, tol_va_deg=tol_va, tol_flow_mva=tol_flow)
    if as_json:
        click.echo(json.dumps({k: getattr(v, k) for k in ("case", "peer", "peer_converged", "gridflow_converged",
                                                          "max_dvm_pu", "max_dva_deg", "max_dflow_mva", "worst",
                                                          "compared")} | {"ok": v.ok}, default=float))
    else:
        click.echo(f"{v.case} vs {v.peer}: peer {'converged' if v.peer_converged else 'DID NOT CONVERGE'}, "
                   f"gridflow {'converged' if v.gridflow_converged else 'DID NOT CONVERGE'}")
        if v.peer_converged and v.gridflow_converged:
            click.echo(f"  max |dVm| {v.max_dvm_pu:.2e} pu (tol {tol_vm:g}), max |dVa| {v.max_dva_deg:.2e} deg "
                       f"(tol {tol_va:g}), max branch flow diff {v.max_dflow_mva:.2e} MW/MVAr (tol {tol_flow:g})")
            click.echo(f"  compared: {', '.join(f'{n} {k}' for k, n in v.compared.items())}")
        click.echo("  OK" if v.ok else "  MISMATCH")
    if not v.ok:
        sys.exit(EXIT_NOCONV if not v.gridflow_converged else EXIT_MISMATCH)


@main.command()
@click.argument("source")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def convert(source, out):
    """Read SOURCE (any case gridflow reads) and write it to OUT: .m (MATPOWER) or .raw (PSS/E 33)."""
    from gridflow.io import convert as run

    path = run(source, out)
    click.echo(f"wrote {path}")


@main.command()
@click.option("--counts/--no-counts", default=True, show_default=True, help="Read each case to count its buses.")
def cases(counts):
    """List the case file formats and the case names gridflow resolves, with bus counts."""
    from gridflow.io import case_formats, case_names, count_buses
    from gridflow.io.powsybl import INSTALL_HINT

    click.echo("case files:")
    for suffix, fmt, ok in case_formats():
        click.echo(f"  {suffix:8s} {fmt:28s} {'read' if ok else 'not available: ' + INSTALL_HINT}")
    click.echo("  written: .m (MATPOWER), .raw (PSS/E 33) with 'gridflow convert'")
    names = case_names()
    for source, label in (("pandapower", "pandapower.networks"), ("matpower", "matpower package (.m)")):
        click.echo(f"{label}:")
        for n in names[source]:
            nb = count_buses(n, source) if counts else None
            click.echo(f"  {n:24s} {'' if nb is None else f'{nb:>7d} buses'}")


@main.command()
@click.argument("case", default=DEFAULT_CASE, required=False)
@click.option("--outages", default="all", show_default=True,
              help="'all' (every in-service branch), 'contab' (the MATPOWER change table shipped for the case), "
                   "or a file: .m change table, PSS/E .con, .csv (branch/gen rows or from_bus,to_bus).")
@click.option("--rating", type=click.Choice(["A", "B", "C"]), default="A", show_default=True,
              help="Post-contingency rating (B/C fall back to A where 0).")
@click.option("--q-lims", is_flag=True, help="Enforce generator reactive limits (PV -> PQ).")
@click.option("--distributed-slack", is_flag=True, help="Share the slack among generators by Pmax.")
@click.option("--tol", "tol_mva", type=click.FloatRange(min=0, min_open=True), default=1e-6, show_default=True,
              help="MW / MVAr.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: all this process may use).")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True, help="Worst contingencies shown.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one row per contingency (.csv or .parquet) and <stem>_violations beside it.")
def contingency(case, outages, rating, q_lims, distributed_slack, tol_mva, threads, top, out):
    """N-1 contingency analysis of CASE: every outage solved in AC (DC LODF estimates beside)."""
    from gridflow.contingency import contingency as run
    from gridflow.io import load_case, outage_list

    if out is not None and out.suffix.lower() not in (".csv", ".parquet"):
        raise GridflowError(f"--out {out}: use a .csv or .parquet file name")
    if out is not None and not out.parent.exists():
        raise GridflowError(f"--out {out}: folder {out.parent} does not exist")
    c = load_case(case)
    res = run(c, outage_list(outages, c), rating=rating, enforce_q_lims=q_lims, distributed_slack=distributed_slack,
              tol_mva=tol_mva, threads=threads)
    click.echo(res.report(top=top))
    if out is not None:
        for p in res.write(out):
            click.echo(f"wrote {p}")


main.add_command(study_command)
main.add_command(buses_command)
main.add_command(sweep_command)
