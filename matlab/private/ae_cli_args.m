function args = ae_cli_args(opts, given)
%AE_CLI_ARGS Command-line flags for the options the caller actually gave.
%   ARGS = AE_CLI_ARGS(OPTS, GIVEN): OPTS is inputParser's Results struct, GIVEN the names of
%   the options that were passed (fieldnames minus UsingDefaults). Options left at their
%   defaults are not passed, so the Python defaults apply. Returns a 1-by-N cell of char.
flags = {'Model',          '--model'
         'ChunkSeconds',   '--chunk-seconds'
         'ContextSeconds', '--context-seconds'
         'Layers',         '--layers'
         'Device',         '--device'
         'Dtype',          '--dtype'
         'MatVersion',     '--mat-version'
         'Channel',        '--channel'
         'HopSeconds',     '--hop-seconds'
         'TopK',           '--top-k'
         'Force10sec',     '--force_10sec'
         'Codec',          '--codec'
         'Stats',          '--stats'
         'Layer',          '--layer'
         'Codes',          '--codes'
         'Checkpoint',     '--checkpoint'};
args = {};
for k = 1:size(flags, 1)
    name = flags{k, 1};
    if ~isfield(opts, name) || ~any(strcmp(given, name))
        continue
    end
    value = ae_text(opts.(name));
    switch name
        case {'Model', 'Codec', 'Stats', 'Checkpoint'}
            value = strtrim(value);
            if exist(value, 'dir') == 7 || exist(value, 'file') == 2  % a local model folder or file:
                value = ae_abspath(value);       % absolute, as Python's working folder may differ
            end
        case 'Layers'
            if isnumeric(value)
                value = strjoin(arrayfun(@(x) sprintf('%d', x), value(:)', 'UniformOutput', false), ',');
            else
                value = lower(regexprep(strtrim(value), '\s+', ''));
            end
        case {'ChunkSeconds', 'ContextSeconds', 'HopSeconds'}
            value = ae_format_number(value);
        case {'TopK', 'Layer'}
            value = sprintf('%d', value);
        case {'Force10sec', 'Codes'}             % a switch: the flag alone, or nothing
            if value
                args = [args, flags(k, 2)]; %#ok<AGROW>
            end
            continue
        case 'MatVersion'
            if isnumeric(value)
                value = ae_format_number(value);
            end
        case 'Channel'
            value = sprintf('%d', value);
        case {'Device', 'Dtype'}
            value = lower(value);
    end
    args = [args, {flags{k, 2}, value}]; %#ok<AGROW>
end
end
