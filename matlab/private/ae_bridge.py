"""Bridge for MATLAB's ``pyrunfile``: run one audio-embeddings script's ``main`` in this interpreter.

MATLAB runs this file with two input variables and reads three output variables back:

    inputs   script    absolute path of the script (python/B2_model_wav2vec2.py, python/embed.py, ...)
             argv      its arguments: a JSON array of strings (or any sequence of strings)
    outputs  status    exit status (0 = success), as the command line would report it
             out_text  everything the script printed on stdout
             err_text  everything it printed on stderr, "error: ..." lines included

Nothing escapes: ``SystemExit`` (argparse usage errors) becomes its exit status and any other
exception becomes status 1 with its traceback and an ``error: ...`` line in ``err_text``, so the
MATLAB side always gets a status and the text to put in its error message.
"""

import contextlib
import io
import json
import runpy
import sys
import traceback


def _as_argv(value):
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    return [str(item) for item in value]


def _exit_status(code, err):
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code
    print(code, file=err)  # sys.exit("message") prints the message and exits with 1
    return 1


def _run(script_path, arguments):
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_path = list(sys.argv), list(sys.path)
    status = 1
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args = _as_argv(arguments)
            script_path = str(script_path)
            sys.argv = [script_path, *args]
            namespace = runpy.run_path(script_path, run_name="__ae_bridge__")  # skips the __main__ block
            main = namespace.get("main")
            if main is None:
                raise RuntimeError(f"{script_path} defines no main()")
            if "DEFAULTS" in namespace:  # the thin scripts: main(DEFAULTS, argv)
                result = main(namespace["DEFAULTS"], args)
            else:
                result = main()  # a plain main() that reads sys.argv
            status = _exit_status(result, err)
        except SystemExit as exc:
            status = _exit_status(exc.code, err)
        except BaseException as exc:  # noqa: BLE001 -- report everything to MATLAB, never raise into it
            traceback.print_exc(file=err)
            message = " ".join(str(exc).split()) or type(exc).__name__
            print(f"error: {type(exc).__name__}: {message}", file=err)
            status = 1
        finally:
            sys.argv, sys.path[:] = saved_argv, saved_path
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
    return int(status), out.getvalue(), err.getvalue()


status, out_text, err_text = _run(script, argv)  # noqa: F821 -- `script` and `argv` come from MATLAB
