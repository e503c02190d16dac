function [inputs, many] = ae_inputs(value)
%AE_INPUTS The audio input(s) of a wrapper call, as absolute paths.
%   [INPUTS, MANY] = AE_INPUTS(VALUE): VALUE is one audio file (char or string), a folder, or a
%   cell array (or string array) of files. MANY is false for one file (INPUTS is then its path),
%   true for a folder or a list (INPUTS a folder path, or a 1-by-N cell of paths).
if isa(value, 'string')
    value = cellstr(value);
    if numel(value) == 1
        value = value{1};
    end
end
if iscell(value)
    if isempty(value) || ~all(cellfun(@(v) (ischar(v) && ~isempty(strtrim(v))) || (isa(v, 'string') && isscalar(v)), value(:)))
        error('audioEmbeddings:invalidOption', 'A list of audio files must be a non-empty cell array of file names.');
    end
    inputs = cellfun(@(v) ae_abspath(char(v)), value(:)', 'UniformOutput', false);
    many = true;
    return
end
ae_check_option('AudioFile', value);
inputs = ae_abspath(value);
many = exist(inputs, 'dir') == 7;
end
