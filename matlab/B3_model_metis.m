function [emb, info] = B3_model_metis(audioFile, varargin)
%B3_MODEL_METIS Metis 8-D semantic latents of an audio file (runs python/B3_model_metis.py).
%   [EMB, INFO] = B3_MODEL_METIS(AUDIOFILE) embeds AUDIOFILE (wav/flac/ogg/mp3, anything ffmpeg
%   reads, or a .mat holding 'audio' and 'fs') with w2v-bert-2.0 (hidden state 17), Amphion's
%   statistics and the RepCodec projection of MaskGCT, and returns
%     EMB   single, T-by-8 continuous latents, one row every 20 ms
%     INFO  struct with the other variables of the result .mat -- time_axis (T-by-1 row onsets, s),
%           frame_stride (s), sample_rate (Hz), model_name, window_s, layer, and codes (T-by-1,
%           0-based codebook indices) with 'Codes' -- and the absolute paths npy_file, mat_file,
%           json_file and corpus_json_file of the files written.
%
%   Name-value options (passed to Python only when given; the Python defaults apply otherwise):
%     'Model'          w2v-bert-2.0 hub id or local folder          (facebook/w2v-bert-2.0)
%     'Codec'          semantic_codec/model.safetensors file, folder or hub id (amphion/MaskGCT)
%     'Stats'          mean/var statistics file                     (Amphion's wav2vec2bert_stats.pt)
%     'Layer'          w2v-bert hidden-state index                  (17)
%     'Codes'          also return the codebook index of each row   (false)
%     'OutputDir'      folder for the outputs                       (<repo>/Models/metis)
%     'Basename'       output file base name                        (the audio file's name)
%     'ChunkSeconds'   longer files are cut into chunks of this, s  (30)
%     'ContextSeconds' context on each side of a chunk, s           (5)
%     'Device'         'auto' | 'cpu' | 'cuda' | 'mps'              ('auto')
%     'Dtype'          'float32' | 'float16' | 'bfloat16'           ('float32')
%     'MatVersion'     5 | 7.3 | 'auto'                             ('auto')
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
%
%   A failed Python run raises error('audioEmbeddings:python', ...) with Python's message.
%
%   Example:
%     [z, info] = B3_model_metis('data/speech_en_us.wav', 'Stats', 'wav2vec2bert_stats.pt');
%     plot(info.time_axis, z)
%
%   See also B2_model_wav2vec2, audioEmbeddings.

if nargin < 1   % no input: the usage line, not an error about an undefined variable
    fprintf('%s\n', 'Usage: [z, info] = B3_model_metis(audioFile | {files} | folder, ''Name'', value, ...); help B3_model_metis lists the options.');
    emb = [];
    info = struct();
    return
end
p = inputParser;
p.KeepUnmatched = true;   % the model's own options: checked by Python (ae_cli_args)
p.FunctionName = 'B3_model_metis';
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
    [emb, info, written] = ae_run_many(py, 'B3_model_metis.py', inputs, [{'--formats', 'npy,mat,json'}, args]);
else
    [emb, info, written] = ae_run_and_read(py, 'B3_model_metis.py', [{inputs}, args]);
end
info.corpus_json_file = written.corpus_json_file;
end
