function s = ae_text(v)
%AE_TEXT A char row from a char row or a MATLAB string scalar; anything else is returned unchanged.
if isa(v, 'string') && isscalar(v)
    s = char(v);
else
    s = v;
end
end
