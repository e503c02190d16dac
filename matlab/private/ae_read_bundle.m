function bundle = ae_read_bundle(args)
%AE_READ_BUNDLE The feature-space bundle a run wrote with 'Bundle', FILE.mat, as a struct of bands.
%   BUNDLE = AE_READ_BUNDLE(ARGS) finds 'Bundle' in the command line ARGS a wrapper sent to Python
%   ('--matlab-option', 'Bundle', FILE, or '--bundle', FILE); [] when it is not there. A .mat
%   bundle (written by audio_embeddings.features.FeatureBundle.save) is loaded:
%     bands        struct, one field per band (a layer of 'Layers', 'all', or the model's rows):
%                  n_samples-by-n_features single, the delays side by side
%     band_names   cell of char, the bands in order
%     run_ids      n_samples-by-1 double, the 1-based run (input file) of every row
%     run_names    cell of char, the input files in run order
%     time_axis_s  n_samples-by-1 double, each row's time within its run (s)
%     delays       1-by-n double, the delays in rows
%     info         char, JSON: the model and settings
%     file         the bundle's path
%   and, with 'PCA', pca_<band>_components (K-by-D), pca_<band>_mean, pca_<band>_explained_variance_ratio.
%   An .npz or .h5 bundle is not read here: BUNDLE has its 'file' only (h5read reads the .h5).
bundle = [];
file = '';
for k = 1:numel(args) - 1
    if ~ischar(args{k})
        continue
    end
    if strcmp(args{k}, '--bundle')
        file = args{k + 1};
    elseif strcmp(args{k}, '--matlab-option') && k + 2 <= numel(args) && strcmpi(args{k + 1}, 'Bundle')
        file = args{k + 2};
    end
end
if isempty(file)
    return
end
file = ae_abspath(ae_text(file));
[~, ~, ext] = fileparts(file);
if ~strcmpi(ext, '.mat')
    bundle = struct('file', file);
    return
end
if exist(file, 'file') ~= 2
    error('audioEmbeddings:output', 'The run reported success but wrote no bundle %s.', file);
end
bundle = load(file);
names = {'band_names', 'run_names'};
for k = 1:numel(names)
    if isfield(bundle, names{k})
        bundle.(names{k}) = cellfun(@char, cellstr(bundle.(names{k})), 'UniformOutput', false);
        bundle.(names{k}) = bundle.(names{k})(:);
    end
end
bundle.file = file;
end
