function [scores, metrics] = B4_score_trials(varargin)
%B4_SCORE_TRIALS Score speaker-verification trials (runs python/B4_model_speaker.py --score or --compare).
%   [SCORES, METRICS] = B4_SCORE_TRIALS(TRIALS, EMBEDDINGS) scores the trial list TRIALS (lines
%   '1 id1 id2', 'id1 id2 target|nontarget' or 'id1 id2') by the cosine of the embeddings in
%   EMBEDDINGS: a B4 output or final folder (B4_model_speaker's OutputDir or info.final_dir), an
%   embeddings.scp/.ark, or a .npy with a .json of ids. Python writes TRIALS.scores and
%   TRIALS.metrics.json into 'OutputDir'; they come back as
%     SCORES   struct of N-by-1 columns: id1, id2 (cell), score (double, 6 decimals as written),
%              label (logical: target trial; [] when TRIALS has no labels)
%     METRICS  the metrics .json as a struct: eer (fraction), eer_percent, eer_threshold,
%              min_dcf_p0_01, min_dcf_p0_05 (and their _threshold), n_trials, n_target,
%              n_nontarget, c_miss, c_fa, score_norm, ... (no eer without labels)
%
%   [SCORE, SAME] = B4_SCORE_TRIALS('Compare', {A, B}, ...) embeds the recordings A and B and
%   returns their cosine SCORE (6 decimals) and, given 'Threshold' or 'Metrics', SAME: true when
%   SCORE >= the threshold (else []).
%
%   Name-value options (passed to Python only when given; the Python defaults apply otherwise):
%     'ScoreNorm'   'none' | 'asnorm'                                 ('none')
%                   asnorm: adaptive s-norm against 'Cohort'
%     'Cohort'      cohort embeddings: a B4 folder (its speaker means) or an .scp/.ark/.npy
%     'CohortTopN'  cohort scores kept per side for AS-norm           (300)
%     'OutputDir'   where the scores and metrics files stay; not given: a temporary folder, deleted
%   With 'Compare' instead:
%     'Model'       'eres2netv2' | 'eres2netv2_w24s4ep4' | 'campplus' | 'ge2e' (offline) ('eres2netv2')
%     'Threshold'   a cosine: SAME is SCORE >= it
%     'Metrics'     a metrics .json of a scoring run: its eer_threshold is the threshold
%     'Device', 'Dtype', 'Channel' and the model's options ('Checkpoint') as in B4_model_speaker
%     'Python'      Python interpreter (else $AUDIO_EMBEDDINGS_PYTHON, else <repo>/.venv)
%
%   A failed Python run raises error('audioEmbeddings:python', ...) with Python's message.
%
%   Example:
%     [U, info] = B4_model_speaker('data_root', 'Model', 'ge2e', 'OutputDir', 'out/spk');
%     [s, m] = B4_score_trials('trials.txt', 'out/spk', 'ScoreNorm', 'asnorm', 'Cohort', 'out/cohort');
%     m.eer_percent, m.min_dcf_p0_01
%     [score, same] = B4_score_trials('Compare', {'a.wav', 'b.wav'}, 'Model', 'ge2e', 'Threshold', m.eer_threshold);
%
%   See also B4_model_speaker.

if nargin < 1
    fprintf('%s\n', ['Usage: [scores, metrics] = B4_score_trials(trials, embeddings, ''Name'', value, ...); ' ...
                     '[score, same] = B4_score_trials(''Compare'', {a, b}, ...)']);
    scores = [];
    metrics = struct();
    return
end
first = ae_text(varargin{1});
comparing = ischar(first) && strcmpi(first, 'Compare');
p = inputParser;
p.FunctionName = 'B4_score_trials';
if comparing   % 'Compare', {A, B}, then name-value options
    varargin = varargin(2:end);
    p.KeepUnmatched = true;   % the model's own options ('Checkpoint'): checked by Python (ae_cli_args)
    p.addRequired('Compare', @(v) iscell(v) && numel(v) == 2 && all(cellfun(@(f) ae_check_option('AudioFile', f), v)));
    ae_add_options(p, {'Model', 'Device', 'Dtype', 'Channel', 'Threshold', 'Metrics'});
else
    p.addRequired('trials', @(v) ae_check_option('AudioFile', v));
    p.addRequired('embeddings', @(v) ae_check_option('AudioFile', v));
    ae_add_options(p, {'ScoreNorm', 'Cohort', 'CohortTopN', 'OutputDir'});
end
p.addParameter('Python', '', @(v) ae_check_option('Python', v));
p.parse(varargin{:});
opts = p.Results;
given = setdiff(fieldnames(opts), p.UsingDefaults);
py = ae_python(opts.Python);
if comparing
    [scores, metrics] = compare(py, opts, given, p.Unmatched);
    return
end
if ~any(strcmp(given, 'OutputDir')) || isempty(opts.OutputDir)   % the results come back here: a scratch folder
    opts.OutputDir = tempname();
    given = [given; {'OutputDir'}];
    cleaner = onCleanup(@() ae_rmtree(opts.OutputDir)); %#ok<NASGU>
end
trials = ae_abspath(strtrim(ae_text(opts.trials)));
args = [{ae_abspath(strtrim(ae_text(opts.embeddings))), '--score', trials}, ae_cli_args(opts, given)];
ae_run_script(py, 'B4_model_speaker.py', args);

[~, name, ext] = fileparts(trials);
base = fullfile(ae_abspath(ae_text(opts.OutputDir)), [name ext]);   % Python's: OutputDir/<trials file name>
scores = readScores([base '.scores']);
metrics = jsondecode(fileread([base '.metrics.json']));
end

function [score, same] = compare(py, opts, given, unmatched)
% 'Compare', {A, B}: the cosine of two recordings (as Python prints it) and, with a threshold, the decision.
files = cellfun(@(f) ae_abspath(strtrim(ae_text(f))), opts.Compare, 'UniformOutput', false);
output = ae_run_script(py, 'B4_model_speaker.py', [{'--compare'}, files(:)', ae_cli_args(opts, given, unmatched)]);
found = regexp(output, 'cosine similarity: (\S+)', 'tokens', 'once');
if isempty(found)
    error('audioEmbeddings:output', 'B4_model_speaker.py --compare printed no score:\n%s', output);
end
score = str2double(found{1});
same = [];
if ~isempty(regexp(output, '^same speaker', 'once', 'lineanchors'))
    same = true;
elseif ~isempty(regexp(output, '^different speakers', 'once', 'lineanchors'))
    same = false;
end
end

function s = readScores(file)
% The scores file Python wrote: 'id1 id2 score [target|nontarget]' per line.
text = fileread(file);
firstLine = regexp(text, '[^\r\n]+', 'match', 'once');
if numel(strsplit(strtrim(firstLine))) >= 4
    c = textscan(text, '%s %s %f %s');
    label = strcmp(c{4}, 'target');
else
    c = textscan(text, '%s %s %f');
    label = [];
end
s = struct('id1', {c{1}}, 'id2', {c{2}}, 'score', c{3}, 'label', label);
end
