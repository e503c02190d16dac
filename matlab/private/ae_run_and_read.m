function [emb, info] = ae_run_and_read(py, script, args, outDir, base)
%AE_RUN_AND_READ Run python/SCRIPT with ARGS and read its result OUTDIR/BASE.mat (see ae_read_result).
%   A run that reports '.mat not written' (e.g. a variable too large for MAT v5; the .npy is
%   still there) raises error('audioEmbeddings:output', ...) with that line.
output = ae_run_script(py, script, args);
notWritten = regexp(output, '[^\r\n]*\.mat not written[^\r\n]*', 'match', 'once');
if ~isempty(notWritten)
    error('audioEmbeddings:output', '%s', strtrim(notWritten));
end
[emb, info] = ae_read_result(outDir, base);
end
