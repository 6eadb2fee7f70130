"""The command layer: every ``satwatch`` command, one module per subpackage it drives.

Commands sit above the subpackages and import them; no subpackage imports a command, so the
subpackages' import graph has no cycle. A command imports what needs torch or ONNX inside its
function, so ``satwatch --help`` and the light commands start without loading them.
"""
