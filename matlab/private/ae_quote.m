function q = ae_quote(arg)
%AE_QUOTE Quote one argument for the shell that system() uses (spaces and quotes survive).
%   Linux/macOS (sh): single quotes, with ' written as '\''.
%   Windows (cmd.exe): double quotes; an embedded " is written as \" (as the C runtime parses it).
arg = ae_text(arg);
if ispc
    q = ['"' strrep(arg, '"', '\"') '"'];
else
    q = ['''' strrep(arg, '''', '''\''''') ''''];
end
end
