function test_B4_model_speaker(dataRoot, outDir, resultFile)
%TEST_B4_MODEL_SPEAKER Octave/MATLAB test of matlab/B4_model_speaker.m with the offline GE2E model.
%   TEST_B4_MODEL_SPEAKER(DATAROOT, OUTDIR, RESULTFILE): DATAROOT holds dataset/speaker/utt.wav
%   files (two speakers with two utterances each); results are saved to RESULTFILE for pytest.
[emb, info] = B4_model_speaker(dataRoot, 'Model', 'ge2e', 'OutputDir', outDir, 'Device', 'cpu');
assert(isa(emb, 'single'), 'emb is %s', class(emb));
assert(isequal(size(emb), [4 256]), 'size(emb) = %s', mat2str(size(emb)));
assert(iscell(info.utterance_ids) && numel(info.utterance_ids) == 4, 'utterance_ids');
assert(isequal(size(info.speaker_embeddings), [2 256]), 'size(speaker_embeddings) = %s', ...
       mat2str(size(info.speaker_embeddings)));
assert(isequal(double(info.num_utterances(:)'), [2 2]), 'num_utterances = %s', mat2str(info.num_utterances));
assert(strcmp(info.model_name, 'ge2e'), 'model_name = %s', info.model_name);
first = strcmp(info.utterance_speakers, info.speaker_ids{1});
meanFirst = mean(double(emb(first, :)), 1);
assert(max(abs(meanFirst - double(info.speaker_embeddings(1, :)))) < 1e-6, 'speaker mean differs');
utterance_ids = info.utterance_ids; speaker_ids = info.speaker_ids;
speaker_embeddings = info.speaker_embeddings;
save(resultFile, '-v7', 'emb', 'utterance_ids', 'speaker_ids', 'speaker_embeddings');
fprintf('test_B4_model_speaker: ok\n');
end
