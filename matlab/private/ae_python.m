function py = ae_python(requested)
%AE_PYTHON Choose the Python interpreter that runs the embedding scripts.
%   PY = AE_PYTHON(REQUESTED) returns an absolute path. Order: the 'Python' option (REQUESTED,
%   when not empty), then the environment variable AUDIO_EMBEDDINGS_PYTHON, then the repository's
%   virtual environment (.venv/bin/python, or .venv\Scripts\python.exe on Windows).
%   Errors with identifier audioEmbeddings:noPython when the chosen interpreter does not exist.
if nargin < 1
    requested = '';
end
requested = strtrim(ae_text(requested));
fromEnv = strtrim(getenv('AUDIO_EMBEDDINGS_PYTHON'));
if ~isempty(requested)
    py = ae_abspath(requested);
    where = 'the ''Python'' option';
elseif ~isempty(fromEnv)
    py = ae_abspath(fromEnv);
    where = 'the environment variable AUDIO_EMBEDDINGS_PYTHON';
else
    venv = fullfile(ae_repo_root(), '.venv');
    if ispc
        py = fullfile(venv, 'Scripts', 'python.exe');
    else
        py = fullfile(venv, 'bin', 'python');
    end
    if exist(py, 'file') ~= 2
        error('audioEmbeddings:noPython', ...
              ['No Python interpreter found: pass ''Python'', ''/path/to/python'', set the environment ' ...
               'variable AUDIO_EMBEDDINGS_PYTHON, or create the virtual environment %s.'], venv);
    end
    return
end
if exist(py, 'file') ~= 2
    error('audioEmbeddings:noPython', 'Python interpreter %s (from %s) does not exist.', py, where);
end
end
