function [status, output] = ae_run_pyrunfile(script, args)
%AE_RUN_PYRUNFILE (MATLAB only) Run SCRIPT's main(ARGS) through pyrunfile and ae_bridge.py.
%   Needs pyenv already set up (ae_pyenv_ready). Returns the exit status and the script's
%   stdout followed by its stderr. A failure of the bridge itself is returned as status -1
%   with an "error: ..." line, so the caller reports it like any other Python error.
bridge = fullfile(fileparts(mfilename('fullpath')), 'ae_bridge.py');
argvJson = jsonencode(args(:)');    % always a JSON array, even for a single argument
outputs = string({'status', 'out_text', 'err_text'});
try
    if any(isspace(bridge))
        % pyrunfile's first argument is a command line ("file arg1 arg2"), so a path with spaces
        % would be split; run the same bridge file through runpy with the path as a value instead.
        code = string({'import runpy as _ae_runpy', ...
                       '_ae_ns = _ae_runpy.run_path(ae_bridge_file, init_globals={"script": script, "argv": argv})', ...
                       'status, out_text, err_text = _ae_ns["status"], _ae_ns["out_text"], _ae_ns["err_text"]', ...
                       'del _ae_ns'});   % one statement per element, as pyrun takes them
        [st, outText, errText] = pyrun(code, outputs, 'ae_bridge_file', bridge, ...
                                       'script', script, 'argv', argvJson);
    else
        [st, outText, errText] = pyrunfile(bridge, outputs, 'script', script, 'argv', argvJson);
    end
catch err
    status = -1;
    output = sprintf('error: running %s through MATLAB''s Python interface failed: %s', script, err.message);
    return
end
status = double(st);
output = char(outText);
errText = char(errText);
if ~isempty(errText)
    if ~isempty(output) && output(end) ~= newline
        output = [output newline];
    end
    output = [output errText];
end
end
