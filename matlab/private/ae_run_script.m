function output = ae_run_script(py, scriptName, args)
%AE_RUN_SCRIPT Run <repo>/python/SCRIPTNAME with the argument list ARGS (cell of char) in PY.
%   OUTPUT = AE_RUN_SCRIPT(PY, SCRIPTNAME, ARGS) returns what the script printed.
%   MATLAB with pyrunfile (R2021b+): MATLAB's Python interface, out of process, through
%   ae_bridge.py (the Python process stays up, so later calls skip the imports).
%   Octave, older MATLAB, or a pyenv that cannot take PY: system().
%   A non-zero exit status raises error('audioEmbeddings:python', ...) whose message holds
%   Python's "error: ..." line(s), or its whole output when there is no such line.
script = fullfile(ae_repo_root(), 'python', scriptName);
if exist(script, 'file') ~= 2
    error('audioEmbeddings:python', 'Python script %s not found.', script);
end
useBridge = ~ae_is_octave() && exist('pyrunfile') > 0 && exist('pyenv') > 0; %#ok<EXIST>
if useBridge
    useBridge = ae_pyenv_ready(py);
end
if useBridge
    [status, output] = ae_run_pyrunfile(script, args);
else
    [status, output] = ae_run_system(py, script, args);
end
if status ~= 0
    error('audioEmbeddings:python', '%s failed (exit status %d):\n%s', ...
          scriptName, status, ae_error_lines(output));
end
end
