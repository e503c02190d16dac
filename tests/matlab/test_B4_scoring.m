function test_B4_scoring(dataDir, outDir, trials, scoreDir, clipA, clipB, resultFile)
%TEST_B4_SCORING Octave/MATLAB test of B4_model_speaker on a Kaldi data dir with 'Vad', and of B4_score_trials.
%   TEST_B4_SCORING(DATADIR, OUTDIR, TRIALS, SCOREDIR, CLIPA, CLIPB, RESULTFILE): DATADIR is a Kaldi
%   data directory (wav.scp, utt2spk, segments) of short cuts of three voices, TRIALS a labelled trial
%   list over its utterance ids; CLIPA and CLIPB are two recordings to compare. Results are saved to
%   RESULTFILE for pytest, which checks them against Python's own files.
[emb, info] = B4_model_speaker(dataDir, 'Model', 'ge2e', 'OutputDir', outDir, 'Device', 'cpu', ...
                               'Vad', 'silero', 'MinSpeechS', 0.2, 'MergeGapS', 0.3, 'Formats', 'ark');
assert(size(emb, 1) == numel(info.utterance_ids), 'rows %d, ids %d', size(emb, 1), numel(info.utterance_ids));

[scores, metrics] = B4_score_trials(trials, outDir, 'OutputDir', scoreDir);
n = numel(scores.score);
assert(iscell(scores.id1) && numel(scores.id1) == n && numel(scores.id2) == n, 'id columns');
assert(islogical(scores.label) && numel(scores.label) == n, 'label column');
assert(metrics.n_trials == n && metrics.eer >= 0 && metrics.eer <= 1, 'metrics');
assert(strcmp(metrics.score_norm, 'none'), 'score_norm %s', metrics.score_norm);

[normed, normMetrics] = B4_score_trials(trials, outDir, 'ScoreNorm', 'asnorm', 'Cohort', outDir, 'CohortTopN', 2);
assert(strcmp(normMetrics.score_norm, 'asnorm') && normMetrics.top_n == 2, 'AS-norm settings');
assert(any(abs(normed.score - scores.score) > 1e-3), 'AS-norm changed no score');

threshold = metrics.eer_threshold;
[score, same] = B4_score_trials('Compare', {clipA, clipB}, 'Model', 'ge2e', 'Device', 'cpu', 'Threshold', threshold);
assert(isscalar(score) && islogical(same) && same == (score >= threshold), 'decision');
[~, none] = B4_score_trials('Compare', {clipA, clipB}, 'Model', 'ge2e', 'Device', 'cpu');
assert(isempty(none), 'a decision without a threshold');

id1 = scores.id1; id2 = scores.id2; score_col = scores.score; label = scores.label; %#ok<NASGU>
normed_score = normed.score; utterance_ids = info.utterance_ids; %#ok<NASGU>
save(resultFile, '-v7', 'id1', 'id2', 'score_col', 'label', 'metrics', 'normMetrics', 'normed_score', ...
     'score', 'same', 'threshold', 'utterance_ids', 'emb');
fprintf('test_B4_scoring: ok\n');
end
