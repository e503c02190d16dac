function row = ae_option_row(name)
%AE_OPTION_ROW The row of ae_options_table for the option NAME (matched case-insensitively, as inputParser does).
%   An option the table does not hold is an internal error: the wrappers only check the options
%   Python declares.
t = ae_options_table();
k = find(strcmpi({t.name}, name), 1);
if isempty(k)
    error('audioEmbeddings:internal', 'No option %s in ae_options_table (regenerate it: see its help).', name);
end
row = t(k);
end
