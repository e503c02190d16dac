function [emb, t, info] = audioEmbeddings(audioIn, fs, varargin)
%AUDIOEMBEDDINGS Embeddings of in-memory audio with any registered model (runs python/embed.py).
%   [EMB, T] = AUDIOEMBEDDINGS(AUDIOIN, FS) returns GE2E speaker embeddings of AUDIOIN, a vector
%   or an N-by-C matrix of samples (channels in columns, averaged unless 'Channel' is given)
%   at FS Hz, in the style of Audio Toolbox's vggishEmbeddings(audioIn, fs):
%     EMB  single, T-by-D, one row per frame (L-by-T-by-D when several wav2vec2 layers are asked for)
%     T    double, T-by-1, frame onsets in seconds
%   [EMB, T, INFO] = AUDIOEMBEDDINGS(...) also returns the other variables of the result
%   (frame_stride, sample_rate, model_name, window_s, and the backend's own fields such as
%   utterance_embedding for GE2E or layers for wav2vec2).
%
%   Floating-point samples are passed as they are (single stays single); integer samples (as from
%   audioread(..., 'native')) are scaled to [-1, 1). FS must be a whole number of Hz.
%
%   Name-value options (passed to Python only when given):
%     'Model'          preset name ('ge2e', 'wav2vec2', ...), hub id or local model folder ('ge2e')
%     'Layers'         wav2vec2 family: 'last', 'all', '1,3' or a vector such as [1 3]
%     'ChunkSeconds'   longest model input, s (20)
%     'ContextSeconds' context on each side of a chunk, s (2)
%     'Channel'        0-based channel to keep instead of the average
%     'Device'         'auto' | 'cpu' | 'cuda' | 'mps'
%     'Dtype'          'float32' | 'float16' | 'bfloat16'
%     'Python'         Python interpreter (else $AUDIO_EMBEDDINGS_PYTHON, else <repo>/.venv)
%
%   Every other option the model or a shared stage declares in Python works here too, under its
%   MATLAB name (the --help of python/embed.py lists them; Python checks them and names them in
%   its errors): e.g. 'HopSeconds' for window models (seconds between windows, as the overlap of
%   vggishEmbeddings), 'TopK' with class names in INFO.classes for BirdNET/Perch, and alignment to
%   a brain-data grid: 'TR' (s) or 'TargetRate' (Hz), 'AlignMethod' ('lanczos' | 'mean' |
%   'nearest'), 'HRF' ('spm' | 'glover' | 'none'), 'Delays' (rows, e.g. 1:4), 'AlignStart',
%   'AlignDuration'; the aligned result is in INFO: embeddings_aligned (T'-by-D*n),
%   time_axis_aligned (T'-by-1, s), target_rate (Hz), align_method, hrf, delays.
%   With a grid, 'Bundle', 'features.mat' writes the feature-space bundle for encoding models
%   ('PCA', K; 'PCAFrom', FILE; 'ZScore', 'run'; 'BidsOut', DIR: see docs/encoding.md) and INFO.bundle
%   holds it: bands (a struct, one n_samples-by-n_features matrix per layer or model), band_names,
%   run_ids, run_names, time_axis_s, delays. The B-wrappers return it in INFO.bundle too.
%
%   The audio goes to Python through a temporary .mat file; it and the outputs are deleted
%   afterwards, also when an error occurs. A failed Python run raises
%   error('audioEmbeddings:python', ...) with Python's message.
%
%   Example:
%     [x, fs] = audioread('data/speech_en_us.wav');
%     [emb, t] = audioEmbeddings(x, fs, 'Model', 'ge2e');
%
%   See also B2_model_wav2vec2.

if nargin < 2
    error('audioEmbeddings:invalidInput', 'Usage: [emb, t] = audioEmbeddings(audioIn, fs, ''Model'', name, ...).');
end
audio = checkAudio(audioIn);
fs = checkRate(fs);

p = inputParser;
p.KeepUnmatched = true;   % the model's own options: checked by Python (ae_cli_args)
p.FunctionName = 'audioEmbeddings';
ae_add_options(p, {'Model', 'ChunkSeconds', 'ContextSeconds', 'Channel', 'Device', 'Dtype'});   % not given: Python's defaults
p.addParameter('Python', '', @(v) ae_check_option('Python', v));
p.parse(varargin{:});
opts = p.Results;
given = setdiff(fieldnames(opts), p.UsingDefaults);
if ~isempty(opts.Channel) && opts.Channel >= size(audio, 2)
    error('audioEmbeddings:invalidOption', '''Channel'' is %d but audioIn has %d channel(s) (0-based: 0..%d).', ...
          opts.Channel, size(audio, 2), size(audio, 2) - 1);
end
py = ae_python(opts.Python);

work = tempname();
[ok, msg] = mkdir(work);
if ~ok
    error('audioEmbeddings:tempdir', 'Cannot create the temporary folder %s: %s', work, msg);
end
cleaner = onCleanup(@() ae_rmtree(work)); %#ok<NASGU> -- removes inputs and outputs, also on error
inFile = fullfile(work, 'audio.mat');
outDir = fullfile(work, 'out');
save(inFile, '-v7', 'audio', 'fs');   % scipy.io.loadmat reads v7 (not v7.3)

args = [{inFile, '--output-dir', outDir, '--basename', 'audio'}, ae_cli_args(opts, given, p.Unmatched)];
try
    ae_run_script(py, 'embed.py', args);
catch err   % Python names the temporary .mat it was given: say audioIn, the caller's own variable
    error(err.identifier, '%s', strrep(strrep(err.message, [inFile ': '], 'audioIn: '), inFile, 'audioIn'));
end

info = ae_load_mat(fullfile(outDir, 'audio.mat'));
emb = info.embeddings;
if isfield(info, 'time_axis')
    t = info.time_axis;
else
    t = zeros(0, 1);
end
info = rmfield(info, 'embeddings');
bundle = ae_read_bundle(args);   % 'Bundle', FILE.mat (one run): the feature-space bundle
if ~isempty(bundle)
    info.bundle = bundle;
end
end

function audio = checkAudio(audio)
% Samples as a column vector or N-by-C matrix of double or single.
if ~isnumeric(audio)
    error('audioEmbeddings:invalidAudio', 'audioIn must be a numeric vector or N-by-C matrix of samples, not %s.', class(audio));
end
if isempty(audio)
    error('audioEmbeddings:invalidAudio', 'audioIn is empty.');
end
if ~isreal(audio)
    error('audioEmbeddings:invalidAudio', 'audioIn must be real, not complex.');
end
if ndims(audio) > 2 %#ok<ISMAT>
    error('audioEmbeddings:invalidAudio', 'audioIn must be a vector or an N-by-C matrix, not %d-D.', ndims(audio));
end
if isvector(audio)
    audio = audio(:);
elseif size(audio, 2) > size(audio, 1)
    error('audioEmbeddings:invalidAudio', ...
          ['audioIn is %d-by-%d: more channels (columns) than samples (rows). Pass samples in rows, ' ...
           'channels in columns (transpose it?).'], size(audio, 1), size(audio, 2));
end
if isinteger(audio)
    % audioread(..., 'native'): scale to [-1, 1) as the float reading would give
    if intmin(class(audio)) < 0
        audio = double(audio) / -double(intmin(class(audio)));
    else
        mid = (double(intmax(class(audio))) + 1) / 2;
        audio = (double(audio) - mid) / mid;
    end
elseif ~isa(audio, 'single')
    audio = double(audio);
end
if ~all(isfinite(audio(:)))
    error('audioEmbeddings:invalidAudio', 'audioIn contains NaN or Inf.');
end
if numel(audio) * (4 + 4 * isa(audio, 'double')) >= 2^31 - 2^20
    error('audioEmbeddings:invalidAudio', ...
          'audioIn is too large to pass through a v7 .mat file (2 GB); save it to an audio file and use the file-based scripts.');
end
end

function fs = checkRate(fs)
% A positive, finite, whole number of Hz (the Python reader takes an integer rate).
if ~(isnumeric(fs) && isreal(fs) && isscalar(fs))
    error('audioEmbeddings:invalidFs', 'fs must be a real numeric scalar (the sample rate in Hz).');
end
fs = double(fs);
if ~(isfinite(fs) && fs > 0)
    error('audioEmbeddings:invalidFs', 'fs must be a positive, finite sample rate in Hz, not %g.', fs);
end
if fs ~= round(fs)
    error('audioEmbeddings:invalidFs', 'fs must be a whole number of Hz, not %g.', fs);
end
end
