"""Code that runs INSIDE the grading kernel, sent by the grader (never part of a notebook).

`GuardedExecute` (guard.py) sends this module's source to the kernel as hidden code before the
first cell. It defines one object, `__grading_guard__`, with three jobs:

* fresh(): drop every `checks*` module from sys.modules and import the checks package again
  from the grader's private copy (an explicit file location, not sys.path), then bind the
  names the test cells use (e.g. `check` -> checks.chain_rule) in the user namespace. A
  `checks.py` or `checks/` written beside the notebook, a patched or replaced `check` module,
  or a fake object bound to `check` are all gone before a test cell runs.
* fingerprint(): identities of everything a check relies on (builtins, numpy, torch, the
  import system, IPython's execution and traceback hooks, trace/profile hooks, and the
  functions and classes of the freshly imported checks). The grader compares it with the
  state recorded before any learner code ran, outside this process.
* restore(labels): put the recorded originals back.

The grader calls these methods through the kernel's `user_expressions` (evaluated with eval(),
outside IPython's input/AST transformers, custom exception handlers and cell events), so a
notebook that installs such hooks cannot rewrite or silence the guard's calls.

It is best effort against code that runs in the same process (see docs/instructor.md,
"Integrity"): it stops the usual ways of faking a pass, not a determined attacker who
studies this file.
"""

# ruff: noqa
GUARD_SOURCE = r'''
def __grading_make_guard(pkg_dir, bindings):
    import builtins, sys, importlib, importlib.util, json, types, hashlib
    _id, _len, _isinstance, _list, _sorted, _getattr = id, len, isinstance, list, sorted, getattr
    _FunctionType, _ModuleType, _type = types.FunctionType, types.ModuleType, type
    _callable, _setattr, _delattr = callable, setattr, delattr
    ABSENT = object()
    _modules = sys.modules
    ip = get_ipython()
    user_ns = ip.user_ns

    WATCHED_MODULES = [
        "builtins", "math", "numbers", "copy", "functools", "contextlib", "warnings", "io",
        "traceback", "linecache", "operator", "importlib", "importlib.util", "importlib.machinery",
        "numpy", "numpy.linalg", "numpy.random", "numpy.testing", "numpy.lib.stride_tricks",
        "torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.autograd",
        "torch.autograd.functional", "torch.linalg", "torch.testing", "torch.func", "torch.optim",
    ]
    # ipykernel swaps these for every execute request (stdin forwarding).
    VOLATILE_BUILTINS = ("input", "raw_input", "getpass")
    SHELL_ATTRS = ["showtraceback", "_showtraceback", "showsyntaxerror", "run_cell", "run_cell_async",
                   "run_ast_nodes", "run_code", "transform_cell", "transform_ast", "should_run_async",
                   "CustomTB", "custom_exceptions", "displayhook", "display_pub", "InteractiveTB",
                   "SyntaxTB", "display_formatter", "excepthook", "user_expressions", "ex", "ev"]
    KERNEL_ATTRS = ["do_execute", "execute_request", "dispatch_shell", "send_response", "session",
                    "shell_handlers", "iopub_socket", "_publish_execute_input", "_publish_status"]

    _MethodType = types.MethodType
    _lib_roots = tuple(p for p in {sys.prefix, sys.base_prefix, sys.exec_prefix} if p)

    def library_code(cb):
        """A callback defined by an installed library (not by code in the notebook)."""
        fn = _getattr(cb, "__func__", cb)
        code = _getattr(fn, "__code__", None)
        if code is None or not _isinstance(fn, _FunctionType):
            return False
        f = code.co_filename
        return ("site-packages" in f or f.startswith(_lib_roots)) and "ipykernel_" not in f

    def token(v):
        if _isinstance(v, _MethodType):
            return "b%d:%s" % (_id(v.__self__), token(v.__func__))
        if _isinstance(v, _FunctionType):
            return "f%d:%d:%d:%d" % (_id(v), _id(v.__code__), _id(v.__defaults__), _id(v.__kwdefaults__))
        if _isinstance(v, _ModuleType):
            name = v.__dict__.get("__name__", "?")
            return "m%s:%d" % (name, _modules.get(name) is v)
        if _isinstance(v, (_list, tuple)):
            return "l%d:%s" % (_len(v), ",".join("%d" % _id(x) for x in v))
        return "o%d" % _id(v)

    def is_watched_value(v):
        return _callable(v) or _isinstance(v, (_ModuleType, _type))

    def namespaces(checks_only=False):
        """(label prefix, mapping, setter, deleter) for every watched namespace."""
        out = []
        names = [n for n in _list(_modules) if n == "checks" or n.startswith("checks.")]
        for name in _sorted(names):
            mod = _modules.get(name)
            if mod is None:
                continue
            d = mod.__dict__
            out.append(("checks|" + name, d, d.__setitem__, d.__delitem__))
            for k, v in _list(d.items()):
                if _isinstance(v, _type) and _getattr(v, "__module__", "").startswith("checks"):
                    out.append(("checks|" + name + "." + k, v.__dict__,
                                (lambda c: lambda a, b: setattr(c, a, b))(v),
                                (lambda c: lambda a: delattr(c, a))(v)))
        if checks_only:
            return out
        for name in WATCHED_MODULES:
            mod = _modules.get(name)
            if mod is None:
                continue
            d = mod.__dict__
            out.append(("mod|" + name, d, d.__setitem__, d.__delitem__))
        torch = _modules.get("torch")
        if torch is not None:
            for cls_name in ("Tensor",):
                cls = torch.__dict__.get(cls_name)
                if _isinstance(cls, _type):
                    out.append(("cls|torch." + cls_name, cls.__dict__,
                                (lambda c: lambda a, b: setattr(c, a, b))(cls),
                                (lambda c: lambda a: delattr(c, a))(cls)))
        for cls in _type(ip).__mro__[:-1]:
            out.append(("cls|" + cls.__qualname__, cls.__dict__,
                        (lambda c: lambda a, b: setattr(c, a, b))(cls),
                        (lambda c: lambda a: delattr(c, a))(cls)))
        kernel = _getattr(ip, "kernel", None)
        if kernel is not None:
            for cls in _type(kernel).__mro__[:-1]:
                if cls.__module__.startswith(("ipykernel", "traitlets")) and "Configurable" not in cls.__qualname__:
                    out.append(("cls|" + cls.__qualname__, cls.__dict__,
                                (lambda c: lambda a, b: setattr(c, a, b))(cls),
                                (lambda c: lambda a: delattr(c, a))(cls)))
        return out

    def special():
        """Single values that are not namespace entries: label -> (current value)."""
        vals = {
            "sys.displayhook": sys.displayhook, "sys.excepthook": sys.excepthook,
            "sys.gettrace": sys.gettrace(), "sys.getprofile": sys.getprofile(),
            "sys.meta_path": _list(sys.meta_path), "sys.path_hooks": _list(sys.path_hooks),
            "sys.stdout": sys.stdout, "sys.stderr": sys.stderr,
            "ip.input_transformers_cleanup": _list(ip.input_transformers_cleanup),
            "ip.input_transformers_post": _list(ip.input_transformers_post),
            "ip.ast_transformers": _list(ip.ast_transformers),
            "ip.custom_exceptions": _list(ip.custom_exceptions),
        }
        for name in WATCHED_MODULES:
            if name in _modules:
                vals["sys.modules[%s]" % name] = _modules[name]
        inst = ip.__dict__
        for a in SHELL_ATTRS:
            vals["ip." + a] = inst.get(a, ABSENT)
        for ev, cbs in ip.events.callbacks.items():
            # Libraries (matplotlib's inline backend) register callbacks; notebook code may not.
            vals["ip.events." + ev] = [cb for cb in cbs if not library_code(cb)]
        kernel = _getattr(ip, "kernel", None)
        if kernel is not None:
            for a in KERNEL_ATTRS:
                vals["kernel." + a] = kernel.__dict__.get(a, ABSENT)
        return vals

    # Libraries rebind a few names themselves: torch.set_default_dtype swaps torch.Storage, and
    # importing torch._dynamo wraps torch.manual_seed (functools.wraps, library code). Those are
    # accepted; a wrapper written in the notebook is not.
    VOLATILE = {"mod|torch": ("Storage",)}

    def library_wrapper(v, orig):
        try:
            return _getattr(v, "__wrapped__", None) is orig and library_code(v)
        except Exception:
            return False

    baseline = {}      # label -> original object, recorded before any learner code ran
    baseline_ns = {}   # namespace label -> (mapping, setter, deleter)

    def fingerprint(checks_only=False):
        fp = {}
        for label, d, setter, deleter in namespaces(checks_only):
            for k, v in _list(d.items()):
                if label.startswith("mod|builtins") and (k in VOLATILE_BUILTINS or (
                        k.startswith("_") and k not in ("__import__", "__build_class__"))):
                    continue
                if k in VOLATILE.get(label, ()):
                    continue
                if is_watched_value(v):
                    full = label + "|" + k
                    orig = baseline.get(full, v)
                    if orig is not v and library_wrapper(v, orig):
                        v = orig
                    fp[full] = token(v)
        if not checks_only:
            for label, v in special().items():
                fp["special|" + label] = "absent" if v is ABSENT else token(v)
        return fp

    def record():
        baseline.clear()
        for label, d, setter, deleter in namespaces():
            if label.startswith("checks|"):
                continue
            baseline_ns[label] = (setter, deleter)
            for k, v in _list(d.items()):
                baseline[label + "|" + k] = v
        for label, v in special().items():
            baseline["special|" + label] = v

    def restore(labels):
        import sys as _sys
        for full in labels:
            if full.startswith("checks|"):
                continue  # the next fresh() re-imports checks anyway
            if full.startswith("special|"):
                label = full[len("special|"):]
                orig = baseline.get(full, ABSENT)
                try:
                    if label == "sys.gettrace":
                        _sys.settrace(None)
                    elif label == "sys.getprofile":
                        _sys.setprofile(None)
                    elif label == "sys.displayhook":
                        _sys.displayhook = orig
                    elif label == "sys.excepthook":
                        _sys.excepthook = orig
                    elif label in ("sys.stdout", "sys.stderr"):
                        setattr(_sys, label[4:], orig)
                    elif label in ("sys.meta_path", "sys.path_hooks"):
                        _getattr(_sys, label[4:])[:] = orig
                    elif label.startswith("sys.modules["):
                        name = label[len("sys.modules["):-1]
                        if orig is None:
                            _modules.pop(name, None)
                        else:
                            _modules[name] = orig
                    elif label in ("ip.input_transformers_cleanup", "ip.input_transformers_post",
                                   "ip.ast_transformers"):
                        _getattr(ip, label[3:])[:] = orig
                    elif label == "ip.custom_exceptions":
                        ip.custom_exceptions = tuple(orig)
                    elif label.startswith("ip.events."):
                        cbs = ip.events.callbacks[label[len("ip.events."):]]
                        cbs[:] = [cb for cb in cbs if library_code(cb) or cb in orig]
                    elif label.startswith("ip."):
                        if orig is ABSENT:
                            ip.__dict__.pop(label[3:], None)
                        else:
                            ip.__dict__[label[3:]] = orig
                    elif label.startswith("kernel."):
                        if orig is ABSENT:
                            ip.kernel.__dict__.pop(label[7:], None)
                        else:
                            ip.kernel.__dict__[label[7:]] = orig
                except Exception:
                    pass
                continue
            ns, _, key = full.rpartition("|")
            if ns not in baseline_ns or full not in baseline:
                continue
            setter, deleter = baseline_ns[ns]
            try:
                setter(key, baseline[full])
            except Exception:
                pass

    def load_checks():
        for name in [n for n in _list(_modules) if n == "checks" or n.startswith("checks.")]:
            del _modules[name]
        init = pkg_dir + "/checks/__init__.py"
        spec = importlib.util.spec_from_file_location("checks", init,
                                                      submodule_search_locations=[pkg_dir + "/checks"])
        mod = importlib.util.module_from_spec(spec)
        _modules["checks"] = mod
        spec.loader.exec_module(mod)
        for target in bindings.values():
            modname = target.split(":")[0]
            if modname != "checks":
                importlib.import_module(modname)

    def bind():
        for name, target in bindings.items():
            modname, _, attr = target.partition(":")
            obj = _modules[modname]
            if attr:
                obj = _getattr(obj, attr)
            user_ns[name] = obj

    def answer(nonce, **payload):
        payload["nonce"] = nonce
        return json.dumps(payload)

    class Guard:
        def setup(self, nonce):
            if "" in sys.path:
                sys.path.remove("")
            load_checks()
            bind()
            record()
            return answer(nonce, fp=fingerprint(), checks=fingerprint(checks_only=True))

        def check(self, nonce):
            return answer(nonce, fp=fingerprint())

        def fresh(self, nonce):
            load_checks()
            bind()
            return answer(nonce, checks=fingerprint(checks_only=True))

        def restore(self, nonce, labels):
            restore(labels)
            return answer(nonce)

    return Guard()

__GRADING_GUARD_NAME__ = __grading_make_guard(__GRADING_PKG_DIR__, __GRADING_BINDINGS__)
del __grading_make_guard
'''
