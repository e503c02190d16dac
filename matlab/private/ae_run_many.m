function [embs, info, written] = ae_run_many(py, script, inputs, args)
%AE_RUN_MANY Run python/SCRIPT once over many files (or a folder) and read every file's result.
%   [EMBS, INFO] = AE_RUN_MANY(PY, SCRIPT, INPUTS, ARGS): INPUTS is a cell array of audio files or
%   one folder (searched recursively). One Python process embeds them all (the model is loaded
%   once), into its output folder (ARGS' --output-dir, else the script's default), where reruns
%   resume. Returns
%     EMBS  N-by-1 cell, EMBS{k} the embeddings of INFO.files{k} ([] when that file failed)
%     INFO  struct: files (N-by-1 cell of the inputs, sorted for a folder), results (N-by-1 cell
%           of the per-file info structs, as a single-file call returns them; [] when failed),
%           failures (struct array with fields file and reason), output_dir, summary_file.
%   [EMBS, INFO, WRITTEN] = AE_RUN_MANY(...) also returns the run's index (see ae_results_index).
%   Failed files do not stop the run: they are listed in a warning
%   ('audioEmbeddings:failedFiles') and in INFO.failures; the others are returned.
index = [tempname() '_results.mat'];
cleaner = onCleanup(@() ae_delete_if_there(index)); %#ok<NASGU>
if ischar(inputs)
    inputs = {inputs};
end
ae_run_script(py, script, [inputs(:)', {'--matlab-results', index}, args], true);
written = ae_results_index(index);
n = numel(written.files);
embs = cell(n, 1);
results = cell(n, 1);
for k = 1:n
    if ~isempty(written.mat_files{k})
        [folder, name] = fileparts(written.mat_files{k});
        [embs{k}, results{k}] = ae_read_result(folder, name);
    end
end
info = struct('files', {written.files}, 'results', {results}, 'failures', written.failures, ...
              'output_dir', written.output_dir, 'summary_file', fullfile(written.output_dir, 'summary.json'));
ae_warn_failures(info.failures, n);
bundle = ae_read_bundle(args);   % 'Bundle', FILE.mat: every file one run, as a struct of bands
if ~isempty(bundle)
    info.bundle = bundle;
end
end
