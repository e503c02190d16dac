function tf = ae_check_option(name, value)
%AE_CHECK_OPTION inputParser validator shared by the wrappers: true, or an error saying what is wrong.
%   Used as @(v) ae_check_option('ChunkSeconds', v). Indices (Channel) are Python's, i.e. 0-based,
%   exactly as the command-line scripts take them. The models' own options are not checked here:
%   Python checks them against their one declaration (see ae_cli_args).
value = ae_text(value);
isText = ischar(value) && (isrow(value) || isempty(value));
isNum = isnumeric(value) && isreal(value) && ~isempty(value) && all(isfinite(value(:)));
switch name
    case {'AudioFile', 'Model', 'OutputDir', 'Python'}
        ok = isText && ~isempty(strtrim(value));
        what = 'a non-empty character vector or string scalar';
    case 'Basename'
        ok = isText && ~isempty(strtrim(value)) && ~any(value == '/' | value == '\');
        what = 'a non-empty file name without folder separators';
    case 'ChunkSeconds'
        ok = isNum && isscalar(value) && value > 0;
        what = 'a positive number of seconds';
    case 'Overwrite'
        ok = (islogical(value) || isNum) && isscalar(value);
        what = 'true or false';
    case 'ContextSeconds'
        ok = isNum && isscalar(value) && value >= 0;
        what = 'a number of seconds >= 0';
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
