function tf = ae_check_option(name, value)
%AE_CHECK_OPTION inputParser validator shared by the wrappers: true, or an error saying what is wrong.
%   Used as @(v) ae_check_option('ChunkSeconds', v). What each option takes (its kind and choices)
%   comes from ae_options_table, which is generated from the Python declarations; an empty value
%   means "not given": Python's default applies. 'AudioFile' (the input) and 'Python' (the
%   interpreter) are the wrappers' own. Indices (Channel) are Python's, i.e. 0-based, exactly as
%   the command-line scripts take them. The models' own options are not checked here: Python
%   checks them against their one declaration (see ae_cli_args).
value = ae_text(value);
isText = ischar(value) && (isrow(value) || isempty(value));
switch name
    case 'AudioFile'
        ok = isText && ~isempty(strtrim(value));
        what = 'a non-empty character vector or string scalar';
    case 'Python'
        ok = isempty(value) || (isText && ~isempty(strtrim(value)));
        what = 'a non-empty character vector or string scalar';
    otherwise
        if isempty(value)   % not given
            tf = true;
            return
        end
        [ok, what] = takes(ae_option_row(name), value, isText);
end
if ~ok
    error('audioEmbeddings:invalidOption', '''%s'' must be %s.', name, what);
end
tf = true;
end

function [ok, what] = takes(row, value, isText)
% Whether VALUE is one of what ROW's kind takes, and that in words.
isNum = isnumeric(value) && isreal(value) && isscalar(value) && isfinite(value);
switch row.kind
    case 'switch'
        ok = (islogical(value) || isNum) && isscalar(value);
        what = 'true or false';
    case 'choice'
        ok = ~isempty(ae_option_choice(row, value));
        what = ['one of ' strjoin(strcat('''', row.choices, ''''), ', ')];
    case {'text', 'path', 'folder'}
        ok = isText && ~isempty(strtrim(value));
        what = 'a non-empty character vector or string scalar';
    case 'name'
        ok = isText && ~isempty(strtrim(value)) && ~any(value == '/' | value == '\');
        what = 'a non-empty file name without folder separators';
    case {'number', 'number>0', 'number>=0', 'integer', 'integer>0', 'integer>=0'}
        whole = strncmp(row.kind, 'integer', 7);
        bound = row.kind(numel(strtok(row.kind, '<>=')) + 1:end);
        ok = isNum && (~whole || value == round(value));
        switch bound
            case '>0'
                ok = ok && value > 0;
            case '>=0'
                ok = ok && value >= 0;
        end
        if whole
            what = 'an integer';
        else
            what = 'a number';
        end
        if ~isempty(bound)
            what = [what ' ' bound(1:end - 1) ' ' bound(end)];
        end
    otherwise   % 'value': Python checks it
        ok = true;
        what = '';
end
end
