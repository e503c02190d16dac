function [emb, info] = ae_read_result(outDir, base)
%AE_READ_RESULT Embeddings and info of a finished run from OUTDIR/BASE.mat.
%   [EMB, INFO] = AE_READ_RESULT(OUTDIR, BASE): EMB is the 'embeddings' variable; INFO holds the
%   other variables plus the absolute paths npy_file, mat_file and json_file of the outputs.
info = ae_load_mat(fullfile(outDir, [base '.mat']));
emb = info.embeddings;
info = rmfield(info, 'embeddings');
info.npy_file = fullfile(outDir, [base '.npy']);
info.mat_file = fullfile(outDir, [base '.mat']);
info.json_file = fullfile(outDir, [base '.json']);
end
