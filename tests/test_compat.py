"""The torchvision import workaround: effective here, inert where torchvision imports cleanly."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_lpips_imports_through_the_workaround() -> None:
    out = _run(
        """
        from services.compat import import_torchvision, workaround_active
        tv = import_torchvision()
        import lpips, torch
        print(tv.__name__, hasattr(torch.ops.torchvision, "nms"), hasattr(lpips, "LPIPS"))
        """
    )
    assert out == "torchvision True True"


def test_workaround_is_inert_when_torchvision_imports_normally() -> None:
    # Simulate a healthy install: a torchvision whose import succeeds at the first try.
    out = _run(
        """
        import sys, types
        sys.modules["torchvision"] = types.ModuleType("torchvision")
        from services.compat import import_torchvision, workaround_active
        module = import_torchvision()
        print(module is sys.modules["torchvision"], workaround_active())
        """
    )
    assert out == "True False"


def test_other_import_errors_are_not_swallowed() -> None:
    out = _run(
        """
        import builtins
        real_import = builtins.__import__
        def broken(name, *args, **kwargs):
            if name == "torchvision":
                raise RuntimeError("some other failure")
            return real_import(name, *args, **kwargs)
        builtins.__import__ = broken
        from services.compat import import_torchvision, workaround_active
        try:
            import_torchvision()
        except RuntimeError as error:
            print(str(error), workaround_active())
        """
    )
    assert out == "some other failure False"
