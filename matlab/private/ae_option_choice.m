function choice = ae_option_choice(row, value)
%AE_OPTION_CHOICE The choice of ROW (a 'choice' row of ae_options_table) that VALUE names, as Python spells it.
%   Text is matched case-insensitively ('CPU' -> 'cpu'); a number by its shortest decimal
%   (MatVersion 7.3 -> '7.3'). Returns '' when VALUE is none of the choices.
value = ae_text(value);
if isnumeric(value) && isreal(value) && isscalar(value) && isfinite(value)
    value = ae_format_number(value);
end
choice = '';
if ischar(value) && (isrow(value) || isempty(value))
    k = find(strcmpi(strtrim(value), row.choices), 1);
    if ~isempty(k)
        choice = row.choices{k};
    end
end
end
