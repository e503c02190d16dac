function r = ae_results_index(index)
%AE_RESULTS_INDEX What a run wrote, from the index its --matlab-results option saved (see python/audio_embeddings/matlab.py).
%   R = AE_RESULTS_INDEX(INDEX): R.files (N-by-1 cell of the inputs), R.mat_files (the result .mat of
%   each, '' when it has none) and R.failures (struct array: file, reason). An index that was not
%   written (the run stopped before its files) gives no files and no failures.
r = struct('files', {cell(0, 1)}, 'mat_files', {cell(0, 1)}, 'failures', struct('file', {}, 'reason', {}));
if exist(index, 'file') ~= 2
    return
end
s = load(index);
text = @(c) cellfun(@char, c(:), 'UniformOutput', false);
r.files = text(s.inputs);
r.mat_files = text(s.mat_files);
r.failures = struct('file', text(s.failed_paths), 'reason', text(s.failed_reasons));
end
