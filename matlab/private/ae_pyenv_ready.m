function ok = ae_pyenv_ready(py)
%AE_PYENV_READY (MATLAB only) Make MATLAB's Python interface use interpreter PY, out of process.
%   OK = AE_PYENV_READY(PY) is true when pyrunfile can now run code in PY:
%     - already loaded with PY (in either execution mode): used as it is;
%     - not loaded (or terminated): pyenv('Version', PY, 'ExecutionMode', 'OutOfProcess');
%     - loaded out of process with another executable: that process is terminated first;
%     - loaded in process with another executable (cannot be changed without restarting
%       MATLAB), or pyenv refuses PY (e.g. a Python version this MATLAB does not support):
%       false, with a warning (once per session), and the caller falls back to system().
persistent warned
ok = false;
reason = '';
try
    pe = pyenv;
    status = char(string(pe.Status));
    loadedExe = char(string(pe.Executable));
    mode = char(string(pe.ExecutionMode));
    if ispc
        same = strcmpi(strrep(loadedExe, '/', '\'), strrep(py, '/', '\'));
    else
        same = strcmp(loadedExe, py);
    end
    if strcmp(status, 'Loaded')
        if same
            ok = true;
            return
        end
        if ~strcmp(mode, 'OutOfProcess')
            reason = sprintf(['MATLAB already runs Python %s in process, which cannot be changed ' ...
                              'without restarting MATLAB'], loadedExe);
        else
            terminate(pe);
        end
    end
    if isempty(reason)
        pyenv('Version', py, 'ExecutionMode', 'OutOfProcess');
        ok = true;
    end
catch err
    reason = err.message;
end
if ~ok && isempty(warned)
    warned = true;
    warning('audioEmbeddings:pyenv', ...
            'Not using MATLAB''s Python interface for %s (%s); running the scripts with system() instead.', ...
            py, reason);
end
end
