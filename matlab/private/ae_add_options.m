function ae_add_options(p, names)
%AE_ADD_OPTIONS Add the shared options NAMES (cell of MATLAB names) to the wrapper's inputParser P.
%   Each is a name-value parameter whose default is [], "not given": it is then not sent, and the
%   Python script's own default applies, so no wrapper restates a Python default. Its check is
%   ae_check_option's, from ae_options_table (generated from the Python declarations). Only the
%   table's wrapper options are taken; every other option reaches Python through KeepUnmatched.
t = ae_options_table();
own = {t([t.wrapper]).name};
for k = 1:numel(names)
    name = names{k};
    if ~any(strcmp(own, name))
        error('audioEmbeddings:internal', '%s is not a wrapper option of ae_options_table.', name);
    end
    p.addParameter(name, [], @(v) ae_check_option(name, v));
end
end
