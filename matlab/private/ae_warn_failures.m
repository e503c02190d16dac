function ae_warn_failures(failures, total)
%AE_WARN_FAILURES One warning ('audioEmbeddings:failedFiles') listing the files a run could not embed.
%   AE_WARN_FAILURES(FAILURES, TOTAL): FAILURES is a struct array with fields file and reason.
if isempty(failures)
    return
end
lines = arrayfun(@(f) sprintf('  %s: %s', f.file, f.reason), failures(:), 'UniformOutput', false);
warning('audioEmbeddings:failedFiles', '%d of %d file(s) could not be embedded (the others are returned):\n%s', ...
        numel(failures), total, strjoin(lines', sprintf('\n')));
end
