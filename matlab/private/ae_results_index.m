function r = ae_results_index(index)
%AE_RESULTS_INDEX What a run wrote, from the index its --matlab-results option saved (see python/audio_embeddings/matlab.py).
%   R = AE_RESULTS_INDEX(INDEX): R.files (N-by-1 cell of the inputs), R.mat_files (the result .mat of
%   each, '' when it has none), R.failures (struct array: file, reason), and where the run wrote:
%   R.output_dir, R.corpus_json_file (B3's corpus JSON) and R.final_dir (B4's per-speaker files),
%   '' when it has none. An index that was not written (the run stopped before its files) gives no
%   files, no failures and '' for the rest.
r = struct('files', {cell(0, 1)}, 'mat_files', {cell(0, 1)}, 'failures', struct('file', {}, 'reason', {}), ...
           'output_dir', '', 'corpus_json_file', '', 'final_dir', '');
if exist(index, 'file') ~= 2
    return
end
s = load(index);
text = @(c) cellfun(@char, c(:), 'UniformOutput', false);
r.files = text(s.inputs);
r.mat_files = text(s.mat_files);
r.failures = struct('file', text(s.failed_paths), 'reason', text(s.failed_reasons));
names = {'output_dir', 'corpus_json_file', 'final_dir'};
for k = 1:numel(names)
    if isfield(s, names{k})
        r.(names{k}) = char(s.(names{k}));
    end
end
end
