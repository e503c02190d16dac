function msg = ae_error_lines(output)
%AE_ERROR_LINES The "error: ..." line(s) of a Python run's output, or the whole output if none.
%   Matches the scripts' one-line errors ("error: <file>: <reason>") and argparse's usage errors
%   ("B2_model_wav2vec2.py: error: ..."); progress bars and warnings are dropped.
output = ae_text(output);
text = strrep(strrep(output, sprintf('\r\n'), sprintf('\n')), sprintf('\r'), sprintf('\n'));
lines = strsplit(text, sprintf('\n'));
keep = false(size(lines));
for k = 1:numel(lines)
    keep(k) = ~isempty(regexp(lines{k}, '^\s*(\S+: )?error: ', 'once'));
end
if any(keep)
    msg = strjoin(strtrim(lines(keep)), sprintf('\n'));
else
    msg = strtrim(text);
    if isempty(msg)
        msg = '(no output)';
    end
end
end
