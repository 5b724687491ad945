"""`.ci/gpu-wheels`: the wheels a GPU machine without PyPI needs are rftkit's runtime
dependencies it lacks, never torch (the machine's CUDA build stays) nor an extra's."""

from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "gpu-wheels"


def load_script():
    loader = SourceFileLoader("gpu_wheels", str(SCRIPT))
    module = module_from_spec(spec_from_loader("gpu_wheels", loader))
    loader.exec_module(module)
    return module


def test_the_closure_is_the_runtime_dependencies_without_extras():
    wheels = load_script()
    closure = wheels.runtime_closure()
    assert {"rftkit", "torch", "pydantic", "pydantic-core", "fastapi", "starlette", "transformers"} <= set(closure)
    assert not {"ray", "openai", "pytest", "trl", "playwright", "wandb"} & set(closure)  # extras (dev, bench, sinks)


def test_the_image_keeps_its_torch_and_gets_what_it_lacks():
    wheels = load_script()
    have = {wheels.key(n) for n in wheels.IMAGE.split()}
    needed = set(wheels.runtime_closure()) - have
    assert "torch" in have and "torch" not in needed and "transformers" not in needed
    assert {"pydantic", "fastapi", "sqlalchemy", "datasets"} <= needed
