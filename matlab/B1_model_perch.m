function [emb, info] = B1_model_perch(audioFile, varargin)
%B1_MODEL_PERCH Perch 2.0 (or BirdNET) embeddings per window of an audio file (runs python/B1_model_perch.py).
%   [EMB, INFO] = B1_MODEL_PERCH(AUDIOFILE) embeds AUDIOFILE with Perch 2.0: 5 s windows at 32 kHz,
%   the last one reflection-padded, one 1536-d row each. Returns
%     EMB   single, T-by-D (one row per window)
%     INFO  struct with the other variables of the result .mat -- time_axis (T-by-1 window starts,
%           s), frame_stride (s), sample_rate (Hz), model_name, window_s (s), hop_s -- the absolute
%           paths npy_file, mat_file, json_file, and frag_files (T-by-1 cell of the per-window
%           <basename>_frag<i>.txt files, one row of comma-separated floats each).
%
%   Name-value options (passed to Python only when given; the Python defaults apply otherwise):
%     'Model'       'perch_v2' | 'perch_v2_cpu' | 'birdnet' | SavedModel folder | .onnx file ('perch_v2')
%     'OutputDir'   folder for the outputs                       (<repo>/Models/perch)
%     'Basename'    output file base name                        (the audio file's name)
%     'Force10sec'  true: 10 s windows at 16 kHz                 (false)
%     'HopSeconds'  seconds between window starts                (the window length)
%     'TopK'        best labels per window into the .json and <basename>_labels.csv (0)
%     'Device'      'auto' | 'cpu' | 'cuda' | 'mps'              ('auto')
%     'Python'      Python interpreter (else $AUDIO_EMBEDDINGS_PYTHON, else <repo>/.venv)
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
%   BirdNET detections as BirdNET-Analyzer 2.4 writes them ('Model', 'birdnet'): 'Detections', true,
%   with 'MinConf' (0.25), 'Sensitivity' (1), 'Overlap' (s), 'SpeciesList' (file), 'Lat', 'Lon',
%   'Week' (1-48), 'LocationFilterThreshold', 'TopN', 'Rtype' ('table,csv,...'; 'mat' is always added).
%   INFO.detections is then a struct of N-by-1 columns -- start_s, end_s, scientific_name (cell),
%   common_name (cell), confidence, file (cell); struct2table(info.detections) in MATLAB -- and
%   INFO.detection_files the result files (<basename>.BirdNET.selection.table.txt ...).
%
%   A failed Python run raises error('audioEmbeddings:python', ...) with Python's message.
%
%   Example:
%     [emb, info] = B1_model_perch('dawn_chorus.wav', 'Model', 'perch_v2_cpu');
%     imagesc(info.time_axis, 1:size(emb, 2), emb')
%     [~, info] = B1_model_perch('dawn_chorus.wav', 'Model', 'birdnet', 'Detections', true, 'MinConf', 0.5);
%     info.detections.common_name
%
%   See also B2_model_wav2vec2, audioEmbeddings.

if nargin < 1   % no input: the usage line, not an error about an undefined variable
    fprintf('%s\n', 'Usage: [emb, info] = B1_model_perch(audioFile | {files} | folder, ''Name'', value, ...); help B1_model_perch lists the options.');
    emb = [];
    info = struct();
    return
end
p = inputParser;
p.KeepUnmatched = true;   % the model's own options: checked by Python (ae_cli_args)
p.FunctionName = 'B1_model_perch';
p.addRequired('audioFile', @(v) ischar(v) || iscell(v) || isa(v, 'string'));
ae_add_options(p, {'Model', 'OutputDir', 'Basename', 'Device', 'Overwrite'});   % not given: Python's defaults
p.addParameter('Python', '', @(v) ae_check_option('Python', v));
p.parse(audioFile, varargin{:});
opts = p.Results;
given = setdiff(fieldnames(opts), p.UsingDefaults);

py = ae_python(opts.Python);
[inputs, many] = ae_inputs(opts.audioFile);
[unmatched, detections] = withDetectionMat(p.Unmatched);
args = ae_cli_args(opts, given, unmatched);
if many   % one Python call for all of them: emb and info.results are cell arrays, one per file
    [emb, info] = ae_run_many(py, 'B1_model_perch.py', inputs, [{'--formats', 'npy,mat,json,txt'}, args]);
    if detections
        for k = 1:numel(info.results)
            if ~isempty(info.results{k})
                info.results{k} = readDetections(info.results{k});
            end
        end
    end
    return
end
[emb, info] = ae_run_and_read(py, 'B1_model_perch.py', [{inputs}, args]);
[outDir, base] = fileparts(info.mat_file);
info.frag_files = arrayfun(@(k) fullfile(outDir, sprintf('%s_frag%d.txt', base, k)), (0:size(emb, 1) - 1)', ...
                           'UniformOutput', false);
if detections
    info = readDetections(info);
end
end

function [unmatched, wanted] = withDetectionMat(unmatched)
% 'Detections', true: the .mat result type is added to 'Rtype' (default 'table'), for INFO.detections.
names = fieldnames(unmatched);
d = names(strcmpi(names, 'Detections'));
wanted = ~isempty(d) && ~isempty(unmatched.(d{1})) && ...
         ((islogical(unmatched.(d{1})) || isnumeric(unmatched.(d{1}))) && all(unmatched.(d{1})(:) ~= 0) || ...
          any(strcmpi(ae_text(unmatched.(d{1})), {'true', 'on', 'yes', '1'})));
if ~wanted
    return
end
r = names(strcmpi(names, 'Rtype'));
if isempty(r)
    unmatched.Rtype = 'table,mat';
elseif isempty(regexp(ae_text(unmatched.(r{1})), '(^|[,;\s])mat([,;\s]|$)', 'once'))
    unmatched.(r{1}) = [strtrim(ae_text(unmatched.(r{1}))) ',mat'];
end
end

function info = readDetections(info)
[outDir, base] = fileparts(info.mat_file);
file = fullfile(outDir, [base '.BirdNET.results.mat']);
s = load(file);
info.detections = s.detections;
found = dir(fullfile(outDir, [base '.BirdNET.*']));
info.detection_files = cellfun(@(n) fullfile(outDir, n), {found.name}', 'UniformOutput', false);
end
