function [emb, info] = B2_model_wav2vec2(audioFile, varargin)
%B2_MODEL_WAV2VEC2 wav2vec2-family frame embeddings of an audio file (runs python/B2_model_wav2vec2.py).
%   [EMB, INFO] = B2_MODEL_WAV2VEC2(AUDIOFILE) embeds AUDIOFILE (wav/flac/ogg/mp3, anything ffmpeg
%   reads, or a .mat holding 'audio' and 'fs') with facebook/wav2vec2-large-xlsr-53 and returns
%     EMB   single, T-by-D (one frame every 20 ms), or L-by-T-by-D when several layers are asked for
%     INFO  struct with the other variables of the result .mat -- time_axis (T-by-1 frame onsets,
%           s), frame_stride (s), sample_rate (Hz), model_name, window_s (s), layers -- and the
%           absolute paths npy_file, mat_file, json_file of the files written.
%
%   Name-value options (passed to Python only when given; the Python defaults apply otherwise):
%     'Model'          preset name, hub id or local model folder   (facebook/wav2vec2-large-xlsr-53)
%     'OutputDir'      folder for the outputs                      (<repo>/Models/wav2vec2)
%     'Basename'       output file base name                       ('wav2vec2_embeddings')
%     'ChunkSeconds'   longest model input, s                      (20)
%     'ContextSeconds' context on each side of a chunk, s          (2)
%     'Layers'         'last', 'all', '1,3' or a vector such as [1 3]; 0 is the input to the
%                      first transformer layer                     ('last')
%     'Device'         'auto' | 'cpu' | 'cuda' | 'mps'             ('auto')
%     'Dtype'          'float32' | 'float16' | 'bfloat16'          ('float32')
%     'MatVersion'     5 | 7.3 | 'auto'                            ('auto')
%     'Channel'        0-based channel to keep instead of the average of all channels
%     'Python'         Python interpreter (else $AUDIO_EMBEDDINGS_PYTHON, else <repo>/.venv)
%
%   AUDIOFILE may also be a cell array of files or a folder: one Python call embeds them all
%   (the model is loaded once; reruns resume in OutputDir, 'Overwrite', true redoes them). EMB is
%   then an N-by-1 cell and INFO a struct with files, results (N-by-1 cell of the per-file INFO
%   structs), failures (struct array: file, reason) and output_dir. A file that fails gives []
%   and a warning ('audioEmbeddings:failedFiles'); the others are returned.
%
%   Every other option the model or a shared stage declares in Python works here too, under its
%   MATLAB name (the --help of the Python script lists them; Python checks them and names them
%   in its errors). Alignment to a brain-data grid: 'TR' (s) or 'TargetRate' (Hz), 'AlignMethod'
%   ('lanczos' | 'mean' | 'nearest'), 'HRF' ('spm' | 'glover' | 'none'), 'Delays' (rows, e.g.
%   1:4), 'AlignStart', 'AlignDuration'; the result is in INFO: embeddings_aligned (T'-by-D*n),
%   time_axis_aligned (T'-by-1, s), target_rate (Hz), align_method, hrf, delays.
%   'Bundle', 'features.mat' (with a grid; 'PCA', 'PCAFrom', 'ZScore', 'BidsOut': docs/encoding.md)
%   writes the feature-space bundle of all the files (each file one run, each layer of 'Layers',
%   'all' one band) and returns it in INFO.bundle: bands (a struct of n_samples-by-n_features
%   matrices), band_names, run_ids (1-based), run_names, time_axis_s, delays.
%
%   A failed Python run raises error('audioEmbeddings:python', ...) with Python's message.
%
%   Example:
%     [emb, info] = B2_model_wav2vec2('data/speech_en_us.wav', 'Model', 'wav2vec2', 'Layers', 'all');
%     plot(info.time_axis, squeeze(emb(end, :, 1)))
%
%   See also audioEmbeddings.

if nargin < 1   % no input: the usage line, not an error about an undefined variable
    fprintf('%s\n', 'Usage: [emb, info] = B2_model_wav2vec2(audioFile | {files} | folder, ''Name'', value, ...); help B2_model_wav2vec2 lists the options.');
    emb = [];
    info = struct();
    return
end
p = inputParser;
p.KeepUnmatched = true;   % the model's own options: checked by Python (ae_cli_args)
p.FunctionName = 'B2_model_wav2vec2';
p.addRequired('audioFile', @(v) ischar(v) || iscell(v) || isa(v, 'string'));
ae_add_options(p, {'Model', 'OutputDir', 'Basename', 'ChunkSeconds', 'ContextSeconds', 'Device', 'Dtype', ...
                   'MatVersion', 'Channel', 'Overwrite'});   % not given: Python's defaults
p.addParameter('Python', '', @(v) ae_check_option('Python', v));
p.parse(audioFile, varargin{:});
opts = p.Results;
given = setdiff(fieldnames(opts), p.UsingDefaults);

py = ae_python(opts.Python);
[inputs, many] = ae_inputs(opts.audioFile);
args = ae_cli_args(opts, given, p.Unmatched);
if many   % one Python call for all of them: emb and info.results are cell arrays, one per file
    [emb, info] = ae_run_many(py, 'B2_model_wav2vec2.py', inputs, [{'--formats', 'npy,mat,json'}, args]);
    return
end
[emb, info] = ae_run_and_read(py, 'B2_model_wav2vec2.py', [{inputs}, args]);
end
