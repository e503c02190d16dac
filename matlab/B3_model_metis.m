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
%     'Basename'       output file base name                        ('metis_latents')
%     'ChunkSeconds'   longer files are cut into chunks of this, s  (30)
%     'ContextSeconds' context on each side of a chunk, s           (5)
%     'Device'         'auto' | 'cpu' | 'cuda' | 'mps'              ('auto')
%     'Dtype'          'float32' | 'float16' | 'bfloat16'           ('float32')
%     'MatVersion'     5 | 7.3 | 'auto'                             ('auto')
%     'Channel'        0-based channel to keep instead of the average of all channels
%     'Python'         Python interpreter (else $AUDIO_EMBEDDINGS_PYTHON, else <repo>/.venv)
%
%   A failed Python run raises error('audioEmbeddings:python', ...) with Python's message.
%
%   Example:
%     [z, info] = B3_model_metis('data/speech_en_us.wav', 'Stats', 'wav2vec2bert_stats.pt');
%     plot(info.time_axis, z)
%
%   See also B2_model_wav2vec2, audioEmbeddings.

p = inputParser;
p.KeepUnmatched = true;   % the model's own options: checked by Python (ae_cli_args)
p.FunctionName = 'B3_model_metis';
p.addRequired('audioFile', @(v) ae_check_option('AudioFile', v));
p.addParameter('Model', 'facebook/w2v-bert-2.0', @(v) ae_check_option('Model', v));
p.addParameter('OutputDir', fullfile(ae_repo_root(), 'Models', 'metis'), @(v) ae_check_option('OutputDir', v));
p.addParameter('Basename', 'metis_latents', @(v) ae_check_option('Basename', v));
p.addParameter('ChunkSeconds', 30, @(v) ae_check_option('ChunkSeconds', v));
p.addParameter('ContextSeconds', 5, @(v) ae_check_option('ContextSeconds', v));
p.addParameter('Device', 'auto', @(v) ae_check_option('Device', v));
p.addParameter('Dtype', 'float32', @(v) ae_check_option('Dtype', v));
p.addParameter('MatVersion', 'auto', @(v) ae_check_option('MatVersion', v));
p.addParameter('Channel', [], @(v) ae_check_option('Channel', v));
p.addParameter('Python', '', @(v) ae_check_option('Python', v));
p.parse(audioFile, varargin{:});
opts = p.Results;
given = setdiff(fieldnames(opts), p.UsingDefaults);

py = ae_python(opts.Python);
outDir = ae_abspath(strtrim(ae_text(opts.OutputDir)));
base = strtrim(ae_text(opts.Basename));
args = [{ae_abspath(ae_text(opts.audioFile)), '--output-dir', outDir, '--basename', base}, ...
        ae_cli_args(opts, given, p.Unmatched)];

[emb, info] = ae_run_and_read(py, 'B3_model_metis.py', args, outDir, base);
info.corpus_json_file = fullfile(outDir, 'semantic_audio_embeddings.json');
end
