function test_bundle(w2vDir, inDir, outDir, resultFile, audioFile)
%TEST_BUNDLE 'Bundle', 'PCA', 'ZScore' on B2 over a folder (each file one run) and on audioEmbeddings.
%   TEST_BUNDLE(W2VDIR, INDIR, OUTDIR, RESULTFILE, AUDIOFILE)
%     W2VDIR      tiny wav2vec2 model folder
%     INDIR       folder of the stimuli (each file one run)
%     OUTDIR      output folder (created)
%     RESULTFILE  .mat the results are saved to for tests/test_matlab.py
%     AUDIOFILE   a speech clip (audioEmbeddings)
%   Checks that INFO.bundle is the struct of bands the bundle file holds, with the band names, run ids
%   and volume counts, and that the file loads as it is (load: a struct 'bands' and 'band_names').
TR = 0.5;
bundleFile = fullfile(outDir, 'features.mat');
[embs, info] = B2_model_wav2vec2(inDir, 'Model', w2vDir, 'OutputDir', fullfile(outDir, 'b2'), 'Layers', 'all', ...
                                 'TR', TR, 'Bundle', bundleFile, 'PCA', 2, 'ZScore', 'run', 'Device', 'cpu');
b = info.bundle;
nLayers = size(embs{1}, 1);
expected = arrayfun(@(i) sprintf('layer%d', i), 0:nLayers - 1, 'UniformOutput', false);
assert(isequal(b.band_names(:)', expected), 'band names: %s', strjoin(b.band_names(:)', ','));
assert(isequal(sort(fieldnames(b.bands)), sort(expected(:))), 'bands fields differ from band_names');
nRuns = numel(info.files);
assert(nRuns == 3 && isequal(unique(b.run_ids(:))', 1:nRuns), 'run_ids are not 1..%d', nRuns);
for k = 1:numel(b.band_names)
    band = b.bands.(b.band_names{k});
    assert(isequal(size(band), [numel(b.run_ids), 2]), 'band %s is %s', b.band_names{k}, mat2str(size(band)));
    for r = 1:nRuns   % z-scored per run
        rows = double(band(b.run_ids == r, :));
        assert(max(abs(mean(rows, 1))) < 1e-4, 'band %s run %d is not centred', b.band_names{k}, r);
    end
end
for r = 1:nRuns   % ceil(D_run / TR) volumes, times from 0 in each run
    [x, fs] = audioread(info.files{r});
    n = ceil(size(x, 1) / fs / TR);
    assert(sum(b.run_ids == r) == n, 'run %d has %d rows, expected %d', r, sum(b.run_ids == r), n);
    assert(max(abs(b.time_axis_s(b.run_ids == r)' - (0:n - 1) * TR)) < 1e-9, 'run %d time axis', r);
end
s = load(bundleFile);   % as MATLAB ridge code would read it
assert(isstruct(s.bands) && numel(s.band_names) == nLayers, 'the file has no struct of bands');

[x, fs] = audioread(audioFile);
[~, ~, infoA] = audioEmbeddings(x(:, 1), fs, 'Model', w2vDir, 'TR', 1, 'Bundle', fullfile(outDir, 'one.mat'), ...
                                'Device', 'cpu');
one = infoA.bundle;
assert(numel(one.band_names) == 1 && all(one.run_ids == 1), 'audioEmbeddings bundle: one band, one run');

band_names = b.band_names; run_ids = b.run_ids; band0 = b.bands.layer0; %#ok<NASGU>
one_name = one.band_names{1}; one_rows = size(one.bands.(one.band_names{1}), 1); %#ok<NASGU>
save(resultFile, '-v7', 'band_names', 'run_ids', 'band0', 'one_name', 'one_rows');
fprintf('test_bundle: ok\n');
end
