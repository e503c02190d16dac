function s = ae_load_mat(file)
%AE_LOAD_MAT Load a result .mat written by the Python scripts into a struct; embeddings as single.
if exist(file, 'file') ~= 2
    error('audioEmbeddings:output', 'The Python run reported success but %s was not written.', file);
end
s = load(file);
if ~isfield(s, 'embeddings')
    error('audioEmbeddings:output', '%s holds no variable ''embeddings''.', file);
end
s.embeddings = single(s.embeddings);
if isfield(s, 'time_axis')
    s.time_axis = double(s.time_axis(:));
end
if isfield(s, 'model_name')
    s.model_name = char(s.model_name);
end
end
