function [emb, info, written] = ae_run_and_read(py, script, args)
%AE_RUN_AND_READ Run python/SCRIPT on one file with ARGS and read the result .mat it wrote (see ae_read_result).
%   [EMB, INFO, WRITTEN] = AE_RUN_AND_READ(PY, SCRIPT, ARGS): where the outputs are (the output
%   folder, the base name) is Python's to decide; the run's --matlab-results index says it, and is
%   returned as WRITTEN (see ae_results_index). A run that reports '.mat not written' (e.g. a
%   variable too large for MAT v5; the .npy is still there) raises
%   error('audioEmbeddings:output', ...) with that line.
index = [tempname() '_results.mat'];
cleaner = onCleanup(@() ae_delete_if_there(index)); %#ok<NASGU>
output = ae_run_script(py, script, [args, {'--matlab-results', index}]);
notWritten = regexp(output, '[^\r\n]*\.mat not written[^\r\n]*', 'match', 'once');
if ~isempty(notWritten)
    error('audioEmbeddings:output', '%s', strtrim(notWritten));
end
written = ae_results_index(index);
if isempty(written.mat_files) || isempty(written.mat_files{1})
    error('audioEmbeddings:output', 'The Python run of %s reported success but wrote no .mat file.', script);
end
[folder, base] = fileparts(written.mat_files{1});
[emb, info] = ae_read_result(folder, base);
bundle = ae_read_bundle(args);   % 'Bundle', FILE.mat: the feature-space bundle as a struct of bands
if ~isempty(bundle)
    info.bundle = bundle;
end
end
