function args = ae_cli_args(opts, given, unmatched)
%AE_CLI_ARGS Command-line flags for the options the caller actually gave.
%   ARGS = AE_CLI_ARGS(OPTS, GIVEN): OPTS is inputParser's Results struct, GIVEN the names of
%   the options that were passed (fieldnames minus UsingDefaults). The wrapper options of
%   ae_options_table (generated from the Python declarations: flag, kind, choices) that were
%   given with a non-empty value become FLAG VALUE; the others are not passed, so the Python
%   defaults apply. Returns a 1-by-N cell of char.
%   ARGS = AE_CLI_ARGS(OPTS, GIVEN, UNMATCHED) also passes every other name-value pair
%   (inputParser's Unmatched struct, with KeepUnmatched) as '--matlab-option NAME VALUE': the
%   model's own options (Layers, HopSeconds, TopK, Codes, ...) and the shared stages' (TR,
%   HRF, ...) are declared once, in Python, which checks the name and the value and names the
%   MATLAB option in its error. A new Python option therefore needs no change here.
t = ae_options_table();
args = {};
for k = 1:numel(t)
    row = t(k);
    if ~row.wrapper || ~isfield(opts, row.name) || ~any(strcmp(given, row.name))
        continue
    end
    value = ae_text(opts.(row.name));
    if isempty(value)   % given as [] or '': not given
        continue
    end
    switch row.kind
        case 'switch'   % the flag alone, or nothing
            if value
                args = [args, {row.flag}]; %#ok<AGROW>
            end
            continue
        case 'choice'
            value = ae_option_choice(row, value);
        case 'folder'
            value = ae_abspath(strtrim(value));
        case 'path'
            value = localPath(strtrim(value));
        case {'text', 'name'}
            value = strtrim(value);
        otherwise   % numbers (checked by ae_check_option), or a value Python checks
            value = valueText(row.name, value);
    end
    args = [args, {row.flag, value}]; %#ok<AGROW>
end
if nargin < 3 || isempty(unmatched)
    return
end
names = fieldnames(unmatched);
for k = 1:numel(names)
    args = [args, {'--matlab-option', names{k}, valueText(names{k}, unmatched.(names{k}))}]; %#ok<AGROW>
end
end

function value = localPath(value)
% A local model folder or file becomes absolute, as Python's working folder may differ.
% exist(..., 'file') is 2 for functions on the path too ('run'): the file must be there itself
if exist(value, 'dir') == 7 || (exist(value, 'file') == 2 && ~isempty(dir(value)))
    value = ae_abspath(value);
end
end

function text = valueText(name, value)
% Text of a MATLAB value for Python: char as it is (local paths made absolute), logicals as
% true/false, numbers (scalars or vectors such as 1:4) as comma-separated shortest decimals.
value = ae_text(value);
if ischar(value) && (isrow(value) || isempty(value))
    text = localPath(strtrim(value));
elseif islogical(value) && isscalar(value)
    text = 'false';
    if value
        text = 'true';
    end
elseif isnumeric(value) && isreal(value) && isvector(value) && all(isfinite(value(:)))
    text = strjoin(arrayfun(@ae_format_number, double(value(:)'), 'UniformOutput', false), ',');
else
    error('audioEmbeddings:invalidOption', '''%s'' must be text, true/false, or a real numeric scalar or vector.', name);
end
end
