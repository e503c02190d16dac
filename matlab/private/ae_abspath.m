function p = ae_abspath(p)
%AE_ABSPATH Make a path absolute against the current folder (and expand a leading ~ on Linux/macOS).
%   Needed because the Python side may run in a process whose working folder is not MATLAB's.
p = ae_text(p);
if isempty(p)
    p = pwd;
    return
end
if ~ispc && (strcmp(p, '~') || strncmp(p, '~/', 2))
    p = [getenv('HOME') p(2:end)];
end
if ispc
    isAbs = (numel(p) >= 2 && p(2) == ':') || any(p(1) == '\/');
else
    isAbs = p(1) == '/';
end
if ~isAbs
    p = fullfile(pwd, p);
end
end
