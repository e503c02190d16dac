function [output, status] = ae_run_script(py, scriptName, args, allowFailedFiles)
%AE_RUN_SCRIPT Run <repo>/python/SCRIPTNAME with the argument list ARGS (cell of char) in PY.
%   OUTPUT = AE_RUN_SCRIPT(PY, SCRIPTNAME, ARGS) returns what the script printed.
%   [OUTPUT, STATUS] = AE_RUN_SCRIPT(..., true) also accepts exit status 1 (some input files
%   failed, the others were written: a corpus run), for the caller to report.
%   MATLAB with pyrunfile (R2021b+): MATLAB's Python interface, out of process, through
%   ae_bridge.py (the Python process stays up, so later calls skip the imports).
%   Octave, older MATLAB, or a pyenv that cannot take PY: system().
%   A non-zero exit status raises error('audioEmbeddings:python', ...) whose message holds
%   Python's "error: ..." line(s), or its whole output when there is no such line.
script = fullfile(ae_repo_root(), 'python', scriptName);
if exist(script, 'file') ~= 2
    error('audioEmbeddings:python', 'Python script %s not found.', script);
end
args = [args, {'--matlab-names'}];   % Python's errors name the MATLAB options, not its flags
useBridge = ~ae_is_octave() && exist('pyrunfile') > 0 && exist('pyenv') > 0; %#ok<EXIST>
if useBridge
    useBridge = ae_pyenv_ready(py);
end
if useBridge
    [status, output] = ae_run_pyrunfile(script, args);
else
    [status, output] = ae_run_system(py, script, args);
end
if nargin < 4
    allowFailedFiles = false;
end
if status ~= 0 && ~(allowFailedFiles && status == 1)
    error('audioEmbeddings:python', '%s failed (exit status %d):\n%s', ...
          scriptName, status, ae_error_lines(output));
end
end
