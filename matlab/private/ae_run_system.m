function [status, output] = ae_run_system(py, script, args)
%AE_RUN_SYSTEM Run "PY SCRIPT ARGS..." with system(), stderr merged into stdout.
%   Every argument is quoted for the shell (paths with spaces). In MATLAB on Linux/macOS the
%   command runs under "env -u LD_LIBRARY_PATH": MATLAB's own libraries on that path break
%   Python's compiled packages (libstdc++, MKL, ...).
parts = cell(1, numel(args) + 2);
parts{1} = ae_quote(py);
parts{2} = ae_quote(script);
for k = 1:numel(args)
    parts{k + 2} = ae_quote(args{k});
end
cmd = [strjoin(parts, ' ') ' 2>&1'];
if ispc
    % cmd.exe /c strips the first and last quote of a line that starts with one; an extra
    % pair of quotes around the whole line keeps the quoted program and arguments intact.
    cmd = ['"' cmd '"'];
elseif ~ae_is_octave()
    cmd = ['env -u LD_LIBRARY_PATH ' cmd];
end
[status, output] = system(cmd);
end
