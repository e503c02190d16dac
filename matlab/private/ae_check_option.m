function tf = ae_check_option(name, value)
%AE_CHECK_OPTION inputParser validator shared by the wrappers: true, or an error saying what is wrong.
%   Used as @(v) ae_check_option('ChunkSeconds', v). Indices (Layers, Channel) are Python's,
%   i.e. 0-based, exactly as the command-line scripts take them.
value = ae_text(value);
isText = ischar(value) && (isrow(value) || isempty(value));
isNum = isnumeric(value) && isreal(value) && ~isempty(value) && all(isfinite(value(:)));
switch name
    case {'AudioFile', 'Model', 'OutputDir', 'Python', 'Codec', 'Stats', 'Checkpoint'}
        ok = isText && ~isempty(strtrim(value));
        what = 'a non-empty character vector or string scalar';
    case 'Basename'
        ok = isText && ~isempty(strtrim(value)) && ~any(value == '/' | value == '\');
        what = 'a non-empty file name without folder separators';
    case 'ChunkSeconds'
        ok = isNum && isscalar(value) && value > 0;
        what = 'a positive number of seconds';
    case 'HopSeconds'
        ok = isNum && isscalar(value) && value > 0;
        what = 'a positive number of seconds';
    case 'TopK'
        ok = isNum && isscalar(value) && value >= 0 && value == round(value);
        what = 'an integer >= 0';
    case 'Layer'
        ok = isNum && isscalar(value) && value >= 0 && value == round(value);
        what = 'a hidden-state index (integer >= 0)';
    case {'Force10sec', 'Codes'}
        ok = (islogical(value) || isNum) && isscalar(value);
        what = 'true or false';
    case 'ContextSeconds'
        ok = isNum && isscalar(value) && value >= 0;
        what = 'a number of seconds >= 0';
    case 'Layers'
        if isText
            ok = ~isempty(regexpi(strtrim(value), '^(last|all|\d+(\s*,\s*\d+)*)$', 'once'));
        else
            ok = isNum && isvector(value) && all(value(:) >= 0 & value(:) == round(value(:)));
        end
        what = '''last'', ''all'', a list such as ''1,3'', or a vector of layer indices >= 0 such as [1 3]';
    case 'Device'
        ok = isText && any(strcmpi(value, {'auto', 'cpu', 'cuda', 'mps'}));
        what = 'one of ''auto'', ''cpu'', ''cuda'', ''mps''';
    case 'Dtype'
        ok = isText && any(strcmpi(value, {'float32', 'float16', 'bfloat16'}));
        what = 'one of ''float32'', ''float16'', ''bfloat16''';
    case 'MatVersion'
        ok = (isText && any(strcmpi(value, {'5', '7.3', 'auto'}))) || ...
             (isNum && isscalar(value) && any(value == [5 7.3]));
        what = '5, 7.3 or ''auto''';
    case 'Channel'
        ok = isNum && isscalar(value) && value >= 0 && value == round(value);
        what = 'a 0-based channel index (integer >= 0)';
    otherwise
        error('audioEmbeddings:internal', 'No check for option %s.', name);
end
if ~ok
    error('audioEmbeddings:invalidOption', '''%s'' must be %s.', name, what);
end
tf = true;
end
