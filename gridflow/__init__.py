"""gridflow: AC power flow (Newton–Raphson) for large interconnections, CPU and GPU.

>>> import gridflow
>>> case = gridflow.load_case("case_ACTIVSg25k")
>>> res = gridflow.solve(case)
>>> res.converged, res.bus.vm_pu.min()
"""

from gridflow import sweep  # the package, callable: gridflow.sweep(spec, ...)
from gridflow.batch import solve_batch
from gridflow.case import Case
from gridflow.contingency import ContingencyResult, contingency
from gridflow.errors import CaseError, ConvergenceError, GridflowError, ScenarioError, ValidationMismatch
from gridflow.io import case_names, from_pandapower, load_case, read_matpower
from gridflow.model import PowerFlowModel
from gridflow.outages import Outage
from gridflow.results import BatchResult, PowerFlowResult
from gridflow.solve import solve

__all__ = [
    "Case", "PowerFlowModel", "PowerFlowResult", "BatchResult", "load_case", "from_pandapower", "read_matpower",
    "case_names", "solve", "solve_batch", "sweep", "contingency", "ContingencyResult", "Outage",
    "GridflowError", "CaseError", "ConvergenceError", "ScenarioError", "ValidationMismatch",
]
__version__ = "0.1.0"
