function args = ae_cli_args(opts, given, unmatched)
%AE_CLI_ARGS Command-line flags for the options the caller actually gave.
%   ARGS = AE_CLI_ARGS(OPTS, GIVEN): OPTS is inputParser's Results struct, GIVEN the names of
%   the options that were passed (fieldnames minus UsingDefaults). Options left at their
%   defaults are not passed, so the Python defaults apply. Returns a 1-by-N cell of char.
%   ARGS = AE_CLI_ARGS(OPTS, GIVEN, UNMATCHED) also passes every other name-value pair
%   (inputParser's Unmatched struct, with KeepUnmatched) as '--matlab-option NAME VALUE': the
%   model's own options (Layers, HopSeconds, TopK, Codes, ...) and the shared stages' (TR,
%   HRF, ...) are declared once, in Python, which checks the name and the value and names the
%   MATLAB option in its error. A new Python option therefore needs no change here.
flags = {'Model',          '--model'
         'ChunkSeconds',   '--chunk-seconds'
         'ContextSeconds', '--context-seconds'
         'Device',         '--device'
         'Dtype',          '--dtype'
         'MatVersion',     '--mat-version'
         'Channel',        '--channel'
         'Overwrite',      '--overwrite'};
args = {};
for k = 1:size(flags, 1)
    name = flags{k, 1};
    if ~isfield(opts, name) || ~any(strcmp(given, name))
        continue
    end
    value = ae_text(opts.(name));
    switch name
        case 'Model'
            value = localPath(strtrim(value));
        case {'ChunkSeconds', 'ContextSeconds'}
            value = ae_format_number(value);
        case 'MatVersion'
            if isnumeric(value)
                value = ae_format_number(value);
            end
        case 'Channel'
            value = sprintf('%d', value);
        case {'Device', 'Dtype'}
            value = lower(value);
        case 'Overwrite'                 % a switch: the flag alone, or nothing
            if value
                args = [args, flags(k, 2)]; %#ok<AGROW>
            end
            continue
    end
    args = [args, {flags{k, 2}, value}]; %#ok<AGROW>
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
if exist(value, 'dir') == 7 || exist(value, 'file') == 2
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
