function s = ae_format_number(x)
%AE_FORMAT_NUMBER Shortest decimal text that reads back as exactly the same double.
x = double(x);
s = sprintf('%.15g', x);
if str2double(s) ~= x
    s = sprintf('%.17g', x);
end
end
